import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/exit-codes';
import { BUNDLE, requireBundle, runCliToEnd } from './helpers/cli';
import { makeUserKey, sshClientOptions, startSshd, type Sshd } from './helpers/sshd';
import { startStack, type Stack } from './helpers/stack';
import { random, sha256, startEchoServer } from './helpers/targets';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { until } from './helpers/stack';

const execFileP = promisify(execFile);

/** Runs a program to its end without throwing on a non-zero status. */
async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(cmd, args, { env, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/**
 * Real OpenSSH through `devstreams proxy` as ssh's ProxyCommand: two devices, each with its own sshd
 * and host key, one known_hosts file naming them by device id, strict host key checking on.
 */
describe('ssh, scp and sftp through devstreams proxy (ProxyCommand)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-sshproxy-'));
  const user = userInfo().username;
  const sshds: Sshd[] = [];
  let stack: Stack;
  let env: NodeJS.ProcessEnv;
  let sshOpts: string[];
  let proxyCommand: string;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let cutter: Server;

  beforeAll(async () => {
    requireBundle();
    chmodSync(dir, 0o700);
    const userKey = await makeUserKey(dir);
    const a = await startSshd(dir, 'pi-a');
    const b = await startSshd(dir, 'pi-b');
    sshds.push(a, b);
    expect(a.hostPub).not.toBe(b.hostPub);
    stack = await startStack();
    echo = await startEchoServer();
    // A target that resets its connection when told to: a stream cut at the device.
    cutter = createServer((sock) => {
      sock.on('error', () => undefined);
      sock.on('data', (d: Buffer) => (d.toString().includes('cut') ? sock.resetAndDestroy() : sock.write(d)));
    });
    await new Promise<void>((r) => cutter.listen(0, '127.0.0.1', r));
    const cutPort = (cutter.address() as AddressInfo).port;
    await stack.startAgent(`  ssh:\n    port: ${a.port}\n  echo:\n    port: ${echo.port}\n  cutter:\n    port: ${cutPort}\n`, { deviceId: 'pi-a' });
    await stack.startAgent(`  ssh:\n    port: ${b.port}\n`, { deviceId: 'pi-b' });
    stack.deviceConnectionString('pi-off'); // registered, never connected
    // One known_hosts for the whole fleet, each device under its own name.
    writeFileSync(join(dir, 'known_hosts'), `pi-a ${a.hostPub}\npi-b ${b.hostPub}\n`);
    proxyCommand = `"${process.execPath}" "${BUNDLE}" proxy --ca "${stack.caFile}" %h`;
    env = { ...process.env, DEVSTREAMS_CONNECTION_STRING: stack.serviceConnectionString };
    sshOpts = [...sshClientOptions(userKey, join(dir, 'known_hosts')), '-o', `ProxyCommand=${proxyCommand}`];
  });

  /** The ~/.ssh/config block docs/ssh.md shows, for this test's devices and keys. */
  function writeSshConfig(): string {
    const config = join(dir, 'ssh_config');
    writeFileSync(config, `Host pi-*\n  ProxyCommand ${proxyCommand}\n  User ${user}\n  IdentityFile ${join(dir, 'user_key')}\n  IdentitiesOnly yes\n  UserKnownHostsFile ${join(dir, 'known_hosts')}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n`);
    return config;
  }

  afterAll(async () => {
    await stack?.stop();
    await echo?.close();
    cutter?.close();
    for (const s of sshds) s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reaches two devices, each checked against its own host key', async () => {
    for (const device of ['pi-a', 'pi-b']) {
      const r = await run('ssh', [...sshOpts, `${user}@${device}`, 'echo via-proxy; id -un'], env);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim().split('\n')).toEqual(['via-proxy', user]);
      expect(r.code).toBe(0);
    }
  });

  it('a device answering with the other device\'s host key is refused (the check is real)', async () => {
    const swapped = join(dir, 'known_hosts_swapped');
    writeFileSync(swapped, `pi-a ${sshds[1]!.hostPub}\n`);
    const opts = sshOpts.map((o) => (o.startsWith('UserKnownHostsFile=') ? `UserKnownHostsFile=${swapped}` : o));
    const r = await run('ssh', [...opts, `${user}@pi-a`, 'true'], env);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });

  it('copies 8 MiB with scp each way and with sftp, byte-exact', async () => {
    const original = random(8 * 1024 * 1024);
    writeFileSync(join(dir, 'up.bin'), original);
    const up = await run('scp', ['-q', ...sshOpts, join(dir, 'up.bin'), `${user}@pi-b:${join(dir, 'arrived.bin')}`], env);
    expect(up.stderr).toBe('');
    expect(sha256(readFileSync(join(dir, 'arrived.bin')))).toBe(sha256(original));
    const down = await run('scp', ['-q', ...sshOpts, `${user}@pi-a:${join(dir, 'arrived.bin')}`, join(dir, 'back.bin')], env);
    expect(down.code).toBe(0);
    expect(sha256(readFileSync(join(dir, 'back.bin')))).toBe(sha256(original));
    writeFileSync(join(dir, 'batch'), `put ${join(dir, 'up.bin')} ${join(dir, 'sftp-up.bin')}\nget ${join(dir, 'sftp-up.bin')} ${join(dir, 'sftp-back.bin')}\n`);
    const sftp = await run('sftp', ['-q', '-b', join(dir, 'batch'), ...sshOpts, `${user}@pi-a`], env);
    expect(sftp.code).toBe(0);
    expect(sha256(readFileSync(join(dir, 'sftp-up.bin')))).toBe(sha256(original));
    expect(sha256(readFileSync(join(dir, 'sftp-back.bin')))).toBe(sha256(original));
  }, 180_000);

  it('syncs a tree with rsync over ssh, byte-exact, and a second run sends nothing', async () => {
    const config = writeSshConfig();
    const tree = join(dir, 'tree');
    mkdirSync(join(tree, 'sub'), { recursive: true });
    const files = { 'a.bin': random(3 * 1024 * 1024), 'sub/b.bin': random(100 * 1024) };
    for (const [name, data] of Object.entries(files)) writeFileSync(join(tree, name), data);
    const target = join(dir, 'rsynced');
    const first = await run('rsync', ['-a', '--stats', '-e', `ssh -F ${config}`, `${tree}/`, `pi-b:${target}/`], env);
    expect(first.code, first.stderr).toBe(0);
    for (const [name, data] of Object.entries(files)) expect(sha256(readFileSync(join(target, name)))).toBe(sha256(data));
    const second = await run('rsync', ['-a', '--stats', '-e', `ssh -F ${config}`, `${tree}/`, `pi-b:${target}/`], env);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/Number of regular files transferred: 0/);
  }, 120_000);

  it('works from a ~/.ssh/config block (Host pi-*) as the docs show it', async () => {
    const config = writeSshConfig();
    const r = await run('ssh', ['-F', config, 'pi-b', 'echo from-config'], env);
    expect(r.stdout.trim()).toBe('from-config');
    expect(r.code).toBe(0);
  });

  it("a failing device's reason is in ssh's stderr, one line from devstreams", async () => {
    const cases: Array<[string, RegExp]> = [
      ['pi-off', /^devstreams: device "pi-off" is offline/m],
      ['pi-999', /^devstreams: unknown device "pi-999"/m],
    ];
    for (const [device, reason] of cases) {
      const r = await run('ssh', [...sshOpts, `${user}@${device}`, 'true'], env);
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(reason);
      expect(r.stderr.split('\n').filter((l) => l.startsWith('devstreams:'))).toHaveLength(1);
    }
    // A device that does not allow the service: the refusal, not "connection reset".
    const refused = await run('ssh', [...sshOpts.map((o) => (o.startsWith('ProxyCommand=') ? `${o} nosuch` : o)), `${user}@pi-a`, 'true'], env);
    expect(refused.stderr).toMatch(/^devstreams: device "pi-a" refused the stream to service "nosuch"/m);
  });

  /** `devstreams proxy DEVICE SERVICE` run by hand, stdin and stdout pipes. */
  function proxy(args: string[]) {
    const p = spawn(process.execPath, [BUNDLE, 'proxy', '--ca', stack.caFile, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const done = new Promise<{ code: number | null; stdout: Buffer; stderr: string }>((r) => p.on('close', (code) => r({ code, stdout: Buffer.concat(out), stderr })));
    return { p, out: () => Buffer.concat(out), done };
  }

  it('proxy: the end of stdin is a half-close; the reply comes back whole and it exits 0', async () => {
    const data = random(2 * 1024 * 1024);
    const run = proxy(['pi-a', 'echo']);
    run.p.stdin.end(data);
    const r = await run.done;
    expect(r.stderr).toBe('');
    expect(sha256(r.stdout)).toBe(sha256(data));
    expect(r.code).toBe(0);
  });

  it('proxy: a stream cut at the device exits 76 with the reason, never as a clean end', async () => {
    const run = proxy(['pi-a', 'cutter']);
    run.p.stdin.write('hello\n');
    await until(() => run.out().toString() === 'hello\n', 'the echo');
    run.p.stdin.write('cut\n'); // the device's target resets the connection mid-stream
    const r = await run.done;
    expect(r.code).toBe(EXIT.PROTOCOL);
    expect(r.stderr).toMatch(/^devstreams: the stream to pi-a\/cutter failed: .*ECONNRESET.* \(close code 4003, sent 10 B received 6 B\)\n$/);
  });

  it('devstreams ssh DEVICE runs ssh with the ProxyCommand set', async () => {
    const plain = sshOpts.filter((o, i) => !o.startsWith('ProxyCommand=') && !(o === '-o' && sshOpts[i + 1]?.startsWith('ProxyCommand=')));
    const r = await runCliToEnd(['ssh', '--ca', stack.caFile, `${user}@pi-a`, ...plain, 'echo wrapped'], { DEVSTREAMS_CONNECTION_STRING: stack.serviceConnectionString });
    expect(r.stdout.trim()).toBe('wrapped');
    expect(r.code).toBe(0);
    const failing = await runCliToEnd(['ssh', '--ca', stack.caFile, `${user}@pi-a`, ...plain, 'exit 7'], { DEVSTREAMS_CONNECTION_STRING: stack.serviceConnectionString });
    expect(failing.code).toBe(7);
  });

  it('connect refuses to listen for a device the hub does not know (exit 68)', async () => {
    const r = await runCliToEnd(['connect', 'pi-999', 'ssh', '--listen', '127.0.0.1:0', '--ca', stack.caFile], { DEVSTREAMS_CONNECTION_STRING: stack.serviceConnectionString });
    expect(r.code).toBe(EXIT.NO_DEVICE);
    expect(r.stderr.trim()).toBe('devstreams: unknown device "pi-999": the hub has no such device (devstreams devices lists them)');
  });
});
