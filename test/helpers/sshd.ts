import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port';

const run = promisify(execFile);
export const SSHD = '/usr/sbin/sshd';

export interface Sshd {
  port: number;
  /** `ssh-ed25519 AAAA…`: the host key as a known_hosts line wants it after the host name. */
  hostPub: string;
  proc: ChildProcess;
  stop: () => void;
}

/** A throwaway user key pair in `dir` (user_key, user_key.pub) and an authorized_keys that admits it. */
export async function makeUserKey(dir: string): Promise<string> {
  const key = join(dir, 'user_key');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${key}.pub`), { mode: 0o600 });
  return key;
}

/**
 * Debian's sshd on a free loopback port with its own throwaway host key (`name`_host_key in `dir`),
 * admitting the keys in `dir`/authorized_keys; resolves once it listens.
 */
export async function startSshd(dir: string, name = 'sshd'): Promise<Sshd> {
  if (!existsSync(SSHD)) throw new Error(`${SSHD} not found: install openssh-server (scripts/install-system-deps.sh does)`);
  const hostKey = join(dir, `${name}_host_key`);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  const port = await freePort();
  const config = join(dir, `${name}_config`);
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      `PidFile ${join(dir, `${name}.pid`)}`,
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
  const proc = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let log = '';
    proc.stderr!.on('data', (c: Buffer) => {
      log += c.toString();
      if (log.includes('Server listening on 127.0.0.1')) resolve();
    });
    proc.on('exit', (code) => reject(new Error(`sshd exited (${code}): ${log}`)));
  });
  const hostPub = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
  return { port, hostPub, proc, stop: () => void proc.kill('SIGTERM') };
}

/** ssh options for a test: only this key, no prompts, strict host key checking against one file. */
export function sshClientOptions(userKey: string, knownHosts: string): string[] {
  return [
    '-i', userKey,
    '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', `UserKnownHostsFile=${knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'ConnectTimeout=30',
  ];
}
