import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { writeFileAtomicSync } from '../core/atomic-file';
import { fileError } from '../core/file-error';
import { join } from 'node:path';
import { DevstreamsError } from '../wire';
import { newKey } from './device-registry';
import { certificateAltNames, createCa, issueCertificate, type KeyAndCert } from './pki';

/**
 * Everything a hub keeps lives in one directory, created on first start and reused later:
 *   hub.json      public host name and listen address (not secret)
 *   ca.pem        the CA devices and services trust (give it to them)
 *   ca-key.pem, server.pem, server-key.pem
 *   secrets.json  service policy key and the stream-token signing key (0600)
 *   devices.json  the device registry (0600, device-registry.ts)
 *   operators.json  the operators and their keys (0600, operators.ts; absent: one operator, `service`,
 *                 with the key in secrets.json)
 * Files are written atomically (temp file, fsync, rename), secrets with mode 0600, and only when
 * their content changes: a hub that needs no change runs from a read-only directory. A first start
 * that fails removes what it made. Every file error is one line naming the file and the cause
 * (ECANTCREATE: exit 73, EFILE_IO: exit 74).
 */
export const SERVICE_POLICY_NAME = 'service';

export interface HubSettings {
  host_name: string;
  listen: string;
}

export interface HubSecrets {
  service_policy_name: string;
  service_policy_key: string;
  stream_signing_key: string;
}

function writeAtomic(path: string, data: string, mode: number): void {
  try {
    writeFileAtomicSync(path, data, mode);
  } catch (err) {
    throw fileError('write', path, err);
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw fileError('read', path, err);
  }
}

function readJson<T>(path: string): T {
  const text = readText(path);
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new DevstreamsError('ECONFIG', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** A recursive mkdir says ENOENT where the parent is read-only: ask once more without recursion for the real cause. */
function mkdirCause(dir: string, err: unknown): unknown {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return err;
  try {
    mkdirSync(dir, { mode: 0o700 });
    rmdirSync(dir);
    return err;
  } catch (again) {
    return again;
  }
}

function settingsText(settings: HubSettings): string {
  return JSON.stringify(settings, null, 2) + '\n';
}

export class HubDataDir {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  get initialized(): boolean {
    return existsSync(this.path('hub.json')) && existsSync(this.path('secrets.json'));
  }

  /**
   * Creates what is missing; reissues the server certificate when it does not name `certHosts`.
   * Returns the TLS material for the listener.
   */
  prepare(settings: HubSettings, certHosts: string[]): { ca: KeyAndCert; server: KeyAndCert } {
    const madeDir = !existsSync(this.dir);
    const made: string[] = [];
    // Files this start creates; a later failure removes them, so a retry starts from what was there.
    const create = (name: string, data: string, mode: number): void => {
      const path = this.path(name);
      writeAtomic(path, data, mode);
      made.push(path);
    };
    try {
      try {
        mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      } catch (err) {
        throw fileError('create', this.dir, mkdirCause(this.dir, err));
      }
      return this.prepareFiles(settings, certHosts, create);
    } catch (err) {
      for (const path of made.reverse()) rmSync(path, { force: true });
      if (madeDir) {
        try {
          rmdirSync(this.dir); // only if empty: never anything we did not make
        } catch {
          // not empty or already gone
        }
      }
      throw err;
    }
  }

  private prepareFiles(settings: HubSettings, certHosts: string[], create: (name: string, data: string, mode: number) => void): { ca: KeyAndCert; server: KeyAndCert } {
    if (!existsSync(this.path('secrets.json'))) {
      const secrets: HubSecrets = {
        service_policy_name: SERVICE_POLICY_NAME,
        service_policy_key: newKey(),
        stream_signing_key: newKey(),
      };
      create('secrets.json', JSON.stringify(secrets, null, 2) + '\n', 0o600);
    }
    if (!existsSync(this.path('devices.json'))) {
      create('devices.json', JSON.stringify({ devices: {} }, null, 2) + '\n', 0o600);
    }
    let ca: KeyAndCert;
    if (existsSync(this.path('ca.pem')) && existsSync(this.path('ca-key.pem'))) {
      ca = { certPem: readText(this.path('ca.pem')), keyPem: readText(this.path('ca-key.pem')) };
    } else {
      ca = createCa(`devstreams hub CA ${randomBytes(4).toString('hex')}`);
      create('ca-key.pem', ca.keyPem, 0o600);
      create('ca.pem', ca.certPem, 0o644);
    }
    let server: KeyAndCert | undefined;
    if (existsSync(this.path('server.pem')) && existsSync(this.path('server-key.pem'))) {
      const certPem = readText(this.path('server.pem'));
      const names = new Set(certificateAltNames(certPem));
      if (certHosts.every((h) => names.has(h))) server = { certPem, keyPem: readText(this.path('server-key.pem')) };
    }
    if (!server) {
      server = issueCertificate(ca, { commonName: certHosts[0]!, altNames: certHosts, usage: 'server' });
      writeAtomic(this.path('server-key.pem'), server.keyPem, 0o600);
      writeAtomic(this.path('server.pem'), server.certPem, 0o644);
    }
    // The real address is known once listening (writeSettings); a first start needs the file now.
    if (!existsSync(this.path('hub.json'))) create('hub.json', settingsText(settings), 0o644);
    return { ca, server };
  }

  /** Writes hub.json when its content changes, never otherwise (a read-only directory stays usable). */
  writeSettings(settings: HubSettings): void {
    const path = this.path('hub.json');
    const text = settingsText(settings);
    if (existsSync(path) && readText(path) === text) return;
    writeAtomic(path, text, 0o644);
  }

  requireInitialized(): void {
    if (!this.initialized) {
      throw new DevstreamsError(
        'ECONFIG',
        `${this.dir} is not a hub data directory yet: run "devstreams hub init --data-dir ${this.dir} --listen HOST:PORT" (or start the hub once) first`,
      );
    }
  }

  settings(): HubSettings {
    this.requireInitialized();
    return readJson<HubSettings>(this.path('hub.json'));
  }

  secrets(): HubSecrets {
    this.requireInitialized();
    return readJson<HubSecrets>(this.path('secrets.json'));
  }
}

// The device registry moved to device-registry.ts; re-exported for code written against this file.
export { DeviceRegistry, assertDeviceId, newKey, type DeviceRecord, type KeyName } from './device-registry';
