import { execFileSync, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/exit-codes';
import { BUNDLE, requireBundle } from './helpers/cli';
import { startStack, until, type Stack } from './helpers/stack';
import { random, sha256 } from './helpers/targets';

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  ms: number;
}

/**
 * `devstreams shell DEVICE [-- CMD]` as a script runs it: a real CLI process, stdin a pipe. `input`
 * is written at once and ended, or handed to a function that feeds it over time.
 */
function shell(stack: Stack, args: string[], input: Buffer | string | ((stdin: NodeJS.WritableStream, out: () => Buffer) => Promise<void>)): Promise<Run> {
  const started = Date.now();
  const p = spawn(process.execPath, [BUNDLE, 'shell', '--ca', stack.caFile, ...args], {
    env: { ...process.env, DEVSTREAMS_CONNECTION_STRING: stack.serviceConnectionString },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  let stderr = '';
  p.stdout.on('data', (c: Buffer) => out.push(c));
  p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  p.stdin.on('error', () => undefined);
  if (typeof input === 'function') void input(p.stdin, () => Buffer.concat(out));
  else p.stdin.end(input);
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr, ms: Date.now() - started })));
}

/** Nothing a terminal would add: no escape sequences (bracketed paste, prompts), no carriage returns. */
function expectNoTerminalBytes(buf: Buffer): void {
  expect(buf.includes(0x1b)).toBe(false);
  expect(buf.includes(0x0d)).toBe(false);
}

describe('devstreams shell for scripts: one command, no terminal, pipes passed through', () => {
  let stack: Stack;

  beforeAll(async () => {
    requireBundle();
    stack = await startStack();
    await stack.startAgent(
      [
        '  shell:',
        '    pty:',
        '      command: /bin/bash',
        '      env: { PS1: "remote$ " }',
        '  noexec:',
        '    pty:',
        '      command: /bin/sh',
        '      exec: false',
        '  asnobody:',
        '    pty:',
        '      command: /bin/sh',
        '      user: nobody',
        '      env: { GREETING: configured }',
        '',
      ].join('\n'),
    );
    stack.deviceConnectionString('pi-off'); // registered, never connected
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("piped commands with an immediate end of input: the output, nothing else, the last command's status", async () => {
    const r = await shell(stack, ['pi-001'], 'uname -s\necho done\n');
    expect(r.stdout.toString()).toBe('Linux\ndone\n');
    expectNoTerminalBytes(r.stdout);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const failed = await shell(stack, ['pi-001'], 'uname -s; false');
    expect(failed.stdout.toString()).toBe('Linux\n');
    expect(failed.code).toBe(1);
  });

  it('a late end of input: the command reads until stdin ends, then exits', async () => {
    const r = await shell(stack, ['pi-001', '--', 'cat', ';', 'echo', 'eof-seen'], async (stdin, out) => {
      stdin.write('first\n');
      await until(() => out().toString().includes('first\n'), 'the first line to come back');
      stdin.write('second\n');
      await until(() => out().toString().includes('second\n'), 'the second line to come back');
      stdin.end();
    });
    expect(r.stdout.toString()).toBe('first\nsecond\neof-seen\n');
    expect(r.code).toBe(0);
  });

  it('exit statuses 0, 3 and 255 are ours; stderr stays apart from stdout', async () => {
    for (const status of [0, 3, 255]) {
      const r = await shell(stack, ['pi-001', '--', 'echo', 'to-out;', 'echo', 'to-err', '>&2;', 'exit', String(status)], '');
      expect(r.stdout.toString()).toBe('to-out\n');
      expect(r.stderr).toBe('to-err\n');
      expect(r.code).toBe(status);
    }
    const killed = await shell(stack, ['pi-001', '--', 'kill', '-TERM', '$$'], '');
    expect(killed.code).toBe(128 + 15);
  });

  it('10 MiB of binary through cat, byte-exact both ways (sha256)', async () => {
    const data = random(10 * 1024 * 1024);
    const r = await shell(stack, ['pi-001', '--', 'cat'], data);
    expect(r.stdout.length).toBe(data.length);
    expect(sha256(r.stdout)).toBe(sha256(data));
    expect(r.code).toBe(0);
  }, 120_000);

  it('-t asks for a terminal; without it there is none', async () => {
    const none = await shell(stack, ['pi-001', '--', 'tty'], '');
    expect(none.stdout.toString()).toBe('not a tty\n');
    expect(none.code).toBe(1);
    const tty = await shell(stack, ['-t', 'pi-001', '--', 'tty'], '');
    expect(tty.stdout.toString()).toMatch(/^\/dev\/pts\/\d+\r\n$/);
    expect(tty.code).toBe(0);
  });

  it('50 runs in a row, none hangs', async () => {
    const times: number[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await shell(stack, ['pi-001', '--', 'echo', `run-${i}`], '');
      expect(r.stdout.toString()).toBe(`run-${i}\n`);
      expect(r.code).toBe(0);
      times.push(r.ms);
    }
    times.sort((a, b) => a - b);
    console.log(`50 runs of shell -- echo: median ${times[25]} ms, max ${times[49]} ms`);
  }, 300_000);

  it('a loop over a fleet (online, offline, unknown devices) never waits on one device', async () => {
    for (const id of ['pi-f1', 'pi-f2']) await stack.startAgent('  shell:\n    pty:\n      command: /bin/sh\n', { deviceId: id });
    for (const id of ['pi-f3', 'pi-f4', 'pi-f5']) stack.deviceConnectionString(id); // registered, offline
    const fleet = ['pi-f1', 'pi-f2', 'pi-f3', 'pi-f4', 'pi-f5', 'pi-f6'];
    const started = Date.now();
    const results: Record<string, number | null> = {};
    for (const id of fleet) {
      const r = await shell(stack, ['--timeout', '30s', id, '--', 'echo', id], '');
      results[id] = r.code;
      if (r.code === 0) expect(r.stdout.toString()).toBe(`${id}\n`);
    }
    expect(results).toEqual({ 'pi-f1': 0, 'pi-f2': 0, 'pi-f3': EXIT.TEMPFAIL, 'pi-f4': EXIT.TEMPFAIL, 'pi-f5': EXIT.TEMPFAIL, 'pi-f6': EXIT.NO_DEVICE });
    console.log(`a loop over ${fleet.length} devices (2 online, 3 offline, 1 unknown): ${Date.now() - started} ms`);
  }, 120_000);

  it('a service with exec: false refuses commands, with the reason', async () => {
    const r = await shell(stack, ['pi-001', 'noexec', '--', 'id'], '');
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/command not started: service "noexec" does not run commands \(pty\.exec is off\)/);
    // its shell with pipes is still a shell
    const piped = await shell(stack, ['pi-001', 'noexec'], 'echo still-a-shell\n');
    expect(piped.stdout.toString()).toBe('still-a-shell\n');
  });

  it('an offline device fails fast with its exit code; --timeout bounds a command that runs on', async () => {
    const offline = await shell(stack, ['pi-off', '--', 'uptime'], '');
    expect(offline.code).toBe(EXIT.TEMPFAIL);
    expect(offline.stderr).toMatch(/^devstreams: device "pi-off" is offline/);
    const slow = await shell(stack, ['--timeout', '2s', 'pi-001', '--', 'sleep', '60'], '');
    expect(slow.code).toBe(EXIT.TIMEOUT);
    expect(slow.stderr).toMatch(/gave up after --timeout 2s/);
    expect(slow.ms).toBeLessThan(30_000);
  });

  it("the command's whole session ends with the stream: SIGTERM to the client ends its background jobs too", async () => {
    const marker = `${3000 + Math.floor(Math.random() * 900)}.5`; // a sleep no one else runs
    const running = (): number => {
      try {
        return execFileSync('pgrep', ['-f', `^sleep ${marker}$`], { encoding: 'utf8' }).trim().split('\n').length;
      } catch {
        return 0; // pgrep exits 1 when nothing matches
      }
    };
    // stdin stays open: the command runs until the client is signalled
    const r = shell(stack, ['pi-001', '--', 'sleep', marker, '&', 'sleep', marker], async () => undefined);
    await until(() => running() === 2, 'both sleeps to run on the device');
    const pids = execFileSync('pgrep', ['-f', `shell --ca ${stack.caFile} pi-001 -- sleep ${marker}`], { encoding: 'utf8' }).trim().split('\n');
    for (const pid of pids) process.kill(Number(pid), 'SIGTERM');
    expect((await r).code).toBe(128 + 15);
    await until(() => running() === 0, 'the sleeps to be ended with the session', 20_000);
  });

  // The drop to another user needs root, which CI has (as pty-privileges.test.ts).
  it.skipIf(process.getuid?.() !== 0)('runs as the configured user, groups dropped, with the configured environment and no TERM', async () => {
    const r = await shell(stack, ['pi-001', 'asnobody', '--', 'id', '-un;', 'id', '-G;', 'echo', '"$GREETING:${TERM-none}"'], '');
    const [user, groups, env] = r.stdout.toString().trim().split('\n');
    expect(user).toBe('nobody');
    expect(groups!.split(' ')).not.toContain('0');
    expect(env).toBe('configured:none');
    expect(r.code).toBe(0);
  });

  it('a start message the agent cannot read (over 4096 characters) is refused, not answered with a shell', async () => {
    const ws = await stack.client.openStream(await stack.client.requestStream('pi-001', 'shell'));
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    const got: Buffer[] = [];
    ws.on('message', (d: Buffer, isBinary: boolean) => isBinary && got.push(d));
    ws.resume();
    ws.send(JSON.stringify({ type: 'exec', tty: false, argv: ['echo', 'x'.repeat(5000)] }));
    const { code, reason } = await closed;
    expect(code).toBe(4001);
    expect(reason).toBe('command not started: the start message is malformed or longer than 4096 characters');
    expect(Buffer.concat(got).length).toBe(0);
  });

  it('usage: nothing after --, or a command without --', async () => {
    const empty = await shell(stack, ['pi-001', '--'], '');
    expect(empty.code).toBe(EXIT.USAGE);
    const noDashes = await shell(stack, ['pi-001', 'shell', 'uptime'], '');
    expect(noDashes.code).toBe(EXIT.USAGE);
    expect(noDashes.stderr).toMatch(/a command goes after --/);
  });
});
