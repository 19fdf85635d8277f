import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeUserKey, sshClientOptions, startSshd, type Sshd } from './helpers/sshd';
import { startStack, type Stack } from './helpers/stack';
import { random, sha256 } from './helpers/targets';

const run = promisify(execFile);

/**
 * Real OpenSSH through the tunnel: Debian's sshd on a free loopback port with a throwaway host key
 * and user key; ssh and scp talk to it only through `connect` → hub → agent.
 */
describe('OpenSSH through devstreams', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-ssh-'));
  const user = userInfo().username;
  let sshd: Sshd;
  let stack: Stack;
  let connectPort: number;
  let sshOpts: string[];

  beforeAll(async () => {
    chmodSync(dir, 0o700);
    const userKey = await makeUserKey(dir);
    sshd = await startSshd(dir, 'host');
    const sshPort = sshd.port;

    stack = await startStack();
    await stack.startAgent(`  ssh:\n    port: ${sshPort}\n`, { deviceId: 'pi-ssh' });
    connectPort = (await stack.connect('pi-ssh', 'ssh')).address.port;
    // Pin the throwaway host key under the address ssh will see: the tunnel's local port.
    writeFileSync(join(dir, 'known_hosts'), `[127.0.0.1]:${connectPort} ${sshd.hostPub}\n`);
    sshOpts = sshClientOptions(userKey, join(dir, 'known_hosts'));
  });

  afterAll(async () => {
    await stack?.stop();
    sshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs a command with ssh through the tunnel', async () => {
    const { stdout } = await run('ssh', [...sshOpts, '-p', String(connectPort), `${user}@127.0.0.1`, 'echo through-the-tunnel; id -un']);
    expect(stdout.trim().split('\n')).toEqual(['through-the-tunnel', user]);
  });

  it('copies a 16 MiB file with scp each way, byte-exact', async () => {
    const original = random(16 * 1024 * 1024);
    writeFileSync(join(dir, 'up.bin'), original);
    const scp = ['-q', ...sshOpts, '-P', String(connectPort)];
    await run('scp', [...scp, join(dir, 'up.bin'), `${user}@127.0.0.1:${join(dir, 'arrived.bin')}`]);
    expect(sha256(readFileSync(join(dir, 'arrived.bin')))).toBe(sha256(original));
    await run('scp', [...scp, `${user}@127.0.0.1:${join(dir, 'arrived.bin')}`, join(dir, 'back.bin')]);
    expect(sha256(readFileSync(join(dir, 'back.bin')))).toBe(sha256(original));
  }, 120_000);
});
