import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { writeFileAtomicSync } from '../core/atomic-file';
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
 * Files are written atomically (temp file, fsync, rename), secrets with mode 0600.
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
  writeFileAtomicSync(path, data, mode);
}

function readJson<T>(path: string): T {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (err) {
    throw new DevstreamsError('ECONFIG', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
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
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (!existsSync(this.path('secrets.json'))) {
      const secrets: HubSecrets = {
        service_policy_name: SERVICE_POLICY_NAME,
        service_policy_key: newKey(),
        stream_signing_key: newKey(),
      };
      writeAtomic(this.path('secrets.json'), JSON.stringify(secrets, null, 2) + '\n', 0o600);
    }
    if (!existsSync(this.path('devices.json'))) {
      writeAtomic(this.path('devices.json'), JSON.stringify({ devices: {} }, null, 2) + '\n', 0o600);
    }
    let ca: KeyAndCert;
    if (existsSync(this.path('ca.pem')) && existsSync(this.path('ca-key.pem'))) {
      ca = { certPem: readFileSync(this.path('ca.pem'), 'utf8'), keyPem: readFileSync(this.path('ca-key.pem'), 'utf8') };
    } else {
      ca = createCa(`devstreams hub CA ${randomBytes(4).toString('hex')}`);
      writeAtomic(this.path('ca-key.pem'), ca.keyPem, 0o600);
      writeAtomic(this.path('ca.pem'), ca.certPem, 0o644);
    }
    let server: KeyAndCert | undefined;
    if (existsSync(this.path('server.pem')) && existsSync(this.path('server-key.pem'))) {
      const certPem = readFileSync(this.path('server.pem'), 'utf8');
      const names = new Set(certificateAltNames(certPem));
      if (certHosts.every((h) => names.has(h))) server = { certPem, keyPem: readFileSync(this.path('server-key.pem'), 'utf8') };
    }
    if (!server) {
      server = issueCertificate(ca, { commonName: certHosts[0]!, altNames: certHosts, usage: 'server' });
      writeAtomic(this.path('server-key.pem'), server.keyPem, 0o600);
      writeAtomic(this.path('server.pem'), server.certPem, 0o644);
    }
    this.writeSettings(settings);
    return { ca, server };
  }

  writeSettings(settings: HubSettings): void {
    writeAtomic(this.path('hub.json'), JSON.stringify(settings, null, 2) + '\n', 0o644);
  }

  requireInitialized(): void {
    if (!this.initialized) {
      throw new DevstreamsError(
        'ECONFIG',
        `${this.dir} is not a hub data directory yet: start "devstreams hub --data-dir ${this.dir} --listen HOST:PORT" once first`,
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
