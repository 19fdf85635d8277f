import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './helpers/free-port';
import { startStack, type Stack } from './helpers/stack';
import { random, sha256 } from './helpers/targets';

const run = promisify(execFile);
const SSHD = '/usr/sbin/sshd';

/**
 * Real OpenSSH through the tunnel: Debian's sshd on a free loopback port with a throwaway host key
 * and user key; ssh and scp talk to it only through `connect` → hub → agent.
 */
describe('OpenSSH through devstreams', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-ssh-'));
  const user = userInfo().username;
  let sshd: ChildProcess;
  let stack: Stack;
  let connectPort: number;
  let sshOpts: string[];

  beforeAll(async () => {
    if (!existsSync(SSHD)) throw new Error(`${SSHD} not found: install openssh-server (scripts/install-system-deps.sh does)`);
    chmodSync(dir, 0o700);
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'user_key')]);
    writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'user_key.pub')), { mode: 0o600 });
    const sshPort = await freePort();
    writeFileSync(
      join(dir, 'sshd_config'),
      [
        `Port ${sshPort}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${join(dir, 'host_key')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PubkeyAuthentication yes',
        'PermitRootLogin prohibit-password',
        'UsePAM no',
        'StrictModes no',
        'Subsystem sftp internal-sftp',
        'LogLevel INFO',
      ].join('\n') + '\n',
    );
    // sshd's privilege separation directory; Debian's package makes it at boot, not at install.
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    sshd = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let log = '';
      sshd.stderr!.on('data', (c: Buffer) => {
        log += c.toString();
        if (log.includes('Server listening on 127.0.0.1')) resolve();
      });
      sshd.on('exit', (code) => reject(new Error(`sshd exited (${code}): ${log}`)));
    });

    stack = await startStack();
    await stack.startAgent(`  ssh:\n    port: ${sshPort}\n`, { deviceId: 'pi-ssh' });
    connectPort = (await stack.connect('pi-ssh', 'ssh')).address.port;
    // Pin the throwaway host key under the address ssh will see: the tunnel's local port.
    const hostPub = readFileSync(join(dir, 'host_key.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
    writeFileSync(join(dir, 'known_hosts'), `[127.0.0.1]:${connectPort} ${hostPub}\n`);
    sshOpts = [
      '-i', join(dir, 'user_key'),
      '-o', 'BatchMode=yes',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
      '-o', 'IdentitiesOnly=yes',
      '-o', 'ConnectTimeout=20',
    ];
  });

  afterAll(async () => {
    await stack?.stop();
    sshd?.kill('SIGTERM');
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
