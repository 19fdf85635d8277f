import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';

export interface UserEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

const GETENT_TIMEOUT_MS = 5_000;

/** Looks a user up through NSS (`getent passwd`), so LDAP or systemd-homed users work as local ones do. */
export function lookupUser(name: string): Promise<UserEntry | undefined> {
  return new Promise((resolve, reject) => {
    execFile('getent', ['passwd', '--', name], { timeout: GETENT_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout) => {
      if (err) {
        // getent exits 2 for "no such key"; anything else is a failure worth reporting.
        if ((err as { code?: unknown }).code === 2) return resolve(undefined);
        return reject(new Error(`getent passwd ${name} failed: ${err.message}`));
      }
      const f = stdout.split('\n')[0]?.split(':') ?? [];
      if (f.length < 7) return reject(new Error(`getent passwd ${name}: unexpected output`));
      resolve({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]!, shell: f[6]! });
    });
  });
}

/** The user the agent itself runs as. */
export function currentUser(): UserEntry {
  const u = userInfo();
  return { name: u.username, uid: u.uid, gid: u.gid, home: u.homedir, shell: u.shell ?? '/bin/sh' };
}

/** `setpriv` (util-linux, present on every Debian and Raspberry Pi OS) drops uid, gid and supplementary groups in one exec. */
export function findSetpriv(): string | undefined {
  return ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
}

export function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
