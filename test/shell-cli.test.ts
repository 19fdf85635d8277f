import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '../cli/exit-codes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLE, requireBundle } from './helpers/cli';
import { startStack, until, type Stack } from './helpers/stack';

/**
 * `devstreams shell` as a person uses it: the real CLI bundle in a real terminal (tmux), keys sent
 * with send-keys, the screen read with capture-pane; and in a pipe, as a script uses it.
 */
const TMUX_SOCKET = `devstreams-test-${process.pid}`;

function tmux(...args: string[]): string {
  return execFileSync('tmux', ['-L', TMUX_SOCKET, ...args], { encoding: 'utf8' });
}

function screen(session: string): string {
  return tmux('capture-pane', '-p', '-t', session);
}

async function waitScreen(session: string, re: RegExp): Promise<RegExpMatchArray> {
  let m: RegExpMatchArray | null = null;
  await until(() => (m = screen(session).match(re)) !== null, `screen matching ${re}`).catch((err: Error) => {
    throw new Error(`${err.message}; the screen shows:\n${screen(session)}`);
  });
  return m!;
}

function clientRunning(session: string): boolean {
  return tmux('display-message', '-p', '-t', session, '#{pane_dead}').trim() !== '1';
}

/** The client's exit code, as the wrapper script recorded it (tmux's own pane status can lag or be missing). */
async function waitExit(session: string, after: string): Promise<number> {
  await until(() => existsSync(`${after}.code`) && readFileSync(`${after}.code`, 'utf8').endsWith('\n'), 'the client to exit').catch((err: Error) => {
    throw new Error(`${err.message}; the screen shows:\n${screen(session)}`);
  });
  return Number(readFileSync(`${after}.code`, 'utf8').trim());
}

function runPiped(stack: Stack, args: string[], input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = spawn(process.execPath, [BUNDLE, 'shell', ...args, '--ca', stack.caFile], {
    env: { ...process.env, DEVSTREAMS_CONNECTION_STRING: stack.serviceConnectionString },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  p.stdin.end(input);
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, stdout, stderr })));
}

describe('devstreams shell (the CLI)', () => {
  let stack: Stack;
  let dir: string;
  let n = 0;

  /** Starts the client in a fresh tmux session; the script records the terminal settings before and after. */
  function startClient(cols: number, rows: number): { session: string; before: string; after: string } {
    const session = `s${++n}`;
    const before = join(dir, `${session}.before`);
    const after = join(dir, `${session}.after`);
    const script = join(dir, `${session}.sh`);
    writeFileSync(
      script,
      `stty -g > ${before}\n"${process.execPath}" "${BUNDLE}" shell pi-001 --ca "${stack.caFile}"\ncode=$?\nstty -g > ${after}\necho $code > ${after}.code\nexit $code\n`,
    );
    tmux('new-session', '-d', '-s', session, '-x', String(cols), '-y', String(rows), '-e', `DEVSTREAMS_CONNECTION_STRING=${stack.serviceConnectionString}`, `sh ${script}`);
    return { session, before, after };
  }

  beforeAll(async () => {
    requireBundle();
    dir = mkdtempSync(join(tmpdir(), 'devstreams-shell-'));
    const conf = join(dir, 'tmux.conf');
    // remain-on-exit keeps a finished pane, so its last screen can be read.
    writeFileSync(conf, 'set -g remain-on-exit on\nset -g status off\n');
    tmux('-f', conf, 'start-server', ';', 'new-session', '-d', '-s', 'keep');
    stack = await startStack();
    await stack.startAgent(['  shell:', '    pty:', '      command: /bin/sh', '      env: { PS1: "remote$ " }', ''].join('\n'));
  });
  afterAll(async () => {
    try {
      tmux('kill-server');
    } catch {
      // already gone
    }
    await stack?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('types a command, follows a window resize, passes Ctrl-C to the remote side, exits with the remote status and restores the terminal', async () => {
    const { session, before, after } = startClient(100, 30);
    await waitScreen(session, /^remote\$/m);
    tmux('send-keys', '-t', session, '-l', 'echo answer=$((6*7))');
    tmux('send-keys', '-t', session, 'Enter');
    await waitScreen(session, /(^|\$ )answer=42$/m);

    tmux('send-keys', '-t', session, '-l', 'stty size');
    tmux('send-keys', '-t', session, 'Enter');
    await waitScreen(session, /(^|\$ )30 100$/m);
    tmux('resize-window', '-t', session, '-x', '120', '-y', '40');
    tmux('send-keys', '-t', session, '-l', 'clear; stty size');
    tmux('send-keys', '-t', session, 'Enter');
    await waitScreen(session, /(^|\$ )40 120$/m);

    // Ctrl-C belongs to the remote shell: it interrupts the remote sleep, and the client stays.
    tmux('send-keys', '-t', session, '-l', 'echo sleep=$((2*3))00; sleep 600');
    tmux('send-keys', '-t', session, 'Enter');
    await waitScreen(session, /^sleep=600$/m); // the line was read: Ctrl-C now flushes no typed-ahead input
    tmux('send-keys', '-t', session, 'C-c');
    await waitScreen(session, /^sleep=600$[\s\S]*^(\^C)?remote\$\s*$(?![\s\S]*\S)/m); // a fresh prompt, last on the screen
    tmux('send-keys', '-t', session, '-l', 'echo after=$((1+1))');
    tmux('send-keys', '-t', session, 'Enter');
    // Typed ahead, so the echo may come before the prompt: the line is `remote$ after=2`.
    await waitScreen(session, /(^|\$ )after=2$/m);
    expect(clientRunning(session)).toBe(true);

    tmux('send-keys', '-t', session, '-l', 'exit 3');
    tmux('send-keys', '-t', session, 'Enter');
    expect(await waitExit(session, after)).toBe(3);
    expect(readFileSync(after, 'utf8')).toBe(readFileSync(before, 'utf8'));
  });

  it('restores the terminal when the stream is lost', async () => {
    const { session, before, after } = startClient(80, 24);
    await waitScreen(session, /^remote\$/m);
    tmux('send-keys', '-t', session, '-l', 'kill -KILL $$');
    tmux('send-keys', '-t', session, 'Enter');
    // Killed by SIGKILL: 128 + 9, as a local shell would report it.
    expect(await waitExit(session, after)).toBe(137);
    expect(readFileSync(after, 'utf8')).toBe(readFileSync(before, 'utf8'));
  });

  it('restores the terminal and exits 128+15 when the client gets SIGTERM', async () => {
    const { session, before, after } = startClient(80, 24);
    await waitScreen(session, /^remote\$/m);
    const wrapper = tmux('display-message', '-p', '-t', session, '#{pane_pid}').trim();
    const client = execFileSync('pgrep', ['-P', wrapper], { encoding: 'utf8' }).trim().split('\n')[0]!;
    process.kill(Number(client), 'SIGTERM');
    expect(await waitExit(session, after)).toBe(143);
    expect(readFileSync(after, 'utf8')).toBe(readFileSync(before, 'utf8'));
  });

  it('works in a pipe: output on stdout, the remote exit status as its own', async () => {
    const r = await runPiped(stack, ['pi-001'], 'echo piped=$((2+3))\nexit 4\n');
    expect(r.stdout).toMatch(/piped=5\r?\n/);
    expect(r.code).toBe(4);
  });

  it('ends a pipe without a final newline or exit with Ctrl-D: status of the last command', async () => {
    const ok = await runPiped(stack, ['pi-001'], 'echo last=$((3*3))');
    expect(ok.stdout).toMatch(/last=9\r?\n/);
    expect(ok.code).toBe(0);
    const failed = await runPiped(stack, ['pi-001'], 'false\n');
    expect(failed.code).toBe(1);
  });

  it('says clearly when the shell is not configured, or the device is unknown or offline', async () => {
    const refused = await runPiped(stack, ['pi-001', 'nosuch'], '');
    expect(refused.code).toBe(EXIT.REFUSED);
    expect(refused.stderr).toMatch(/refused the stream to service "nosuch".*is a pty service named "nosuch"/s);
    const unknown = await runPiped(stack, ['no-such-device'], '');
    expect(unknown.code).toBe(EXIT.NO_DEVICE);
    expect(unknown.stderr).toMatch(/unknown device "no-such-device"/);
    stack.deviceConnectionString('pi-off'); // registered, never connected
    const offline = await runPiped(stack, ['pi-off'], '');
    expect(offline.code).toBe(EXIT.TEMPFAIL);
    expect(offline.stderr).toMatch(/offline/);
  });
});
