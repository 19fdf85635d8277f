import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DevstreamsError } from '../wire';
import { certificateAltNames, createCa, issueCertificate, type KeyAndCert } from './pki';

/**
 * Everything a hub keeps lives in one directory, created on first start and reused later:
 *   hub.json      public host name and listen address (not secret)
 *   ca.pem        the CA devices and services trust (give it to them)
 *   ca-key.pem, server.pem, server-key.pem
 *   secrets.json  service policy key and the stream-token signing key (0600)
 *   devices.json  the device registry (0600)
 * Files are written atomically (temp file, rename), secrets with mode 0600.
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

export interface DeviceRecord {
  primary_key: string;
  secondary_key: string;
  created: string;
  /**
   * `sas` (default): the device signs tokens with either key. `x509_ca`: it presents a client
   * certificate signed by the hub's CA whose CN is its id; keys are refused (they exist only so the
   * record keeps one shape).
   */
  authentication?: 'sas' | 'x509_ca';
}

export type KeyName = 'primary' | 'secondary';

export function newKey(): string {
  return randomBytes(32).toString('base64');
}

function writeAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
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

  readDevices(): Record<string, DeviceRecord> {
    return readJson<{ devices: Record<string, DeviceRecord> }>(this.path('devices.json')).devices;
  }

  writeDevices(devices: Record<string, DeviceRecord>): void {
    writeAtomic(this.path('devices.json'), JSON.stringify({ devices }, null, 2) + '\n', 0o600);
  }
}

/** IoT Hub device ids: up to 128 of letters, digits and `-.%_*?!(),=@$'` with `:` too; we allow a safe subset. */
const DEVICE_ID = /^[A-Za-z0-9\-._:@]{1,128}$/;

export function assertDeviceId(id: string): void {
  if (!DEVICE_ID.test(id)) {
    throw new DevstreamsError('EUSAGE', `device id "${id}" must be 1-128 of letters, digits and - . _ : @`);
  }
}

/**
 * The device registry, read from devices.json and re-read when the file changes, so `hub add-device`
 * works against a running hub without a restart.
 */
export class DeviceRegistry {
  private devices: Record<string, DeviceRecord> = {};
  private mtimeMs = -1;

  constructor(private readonly dataDir: HubDataDir) {}

  private refresh(): void {
    const st = statSync(this.dataDir.path('devices.json'), { throwIfNoEntry: false });
    if (!st || st.mtimeMs === this.mtimeMs) return;
    this.devices = this.dataDir.readDevices();
    this.mtimeMs = st.mtimeMs;
  }

  get(deviceId: string): DeviceRecord | undefined {
    this.refresh();
    return Object.hasOwn(this.devices, deviceId) ? this.devices[deviceId] : undefined;
  }

  list(): string[] {
    this.refresh();
    return Object.keys(this.devices);
  }

  add(deviceId: string, opts: { x509?: boolean } = {}): DeviceRecord {
    assertDeviceId(deviceId);
    this.refresh();
    const existing = this.devices[deviceId];
    if (existing) {
      if (Boolean(opts.x509) !== (existing.authentication === 'x509_ca')) {
        throw new DevstreamsError('EUSAGE', `device "${deviceId}" is already registered with ${existing.authentication === 'x509_ca' ? 'an X.509 certificate' : 'keys'}`);
      }
      return existing;
    }
    const record: DeviceRecord = {
      primary_key: newKey(),
      secondary_key: newKey(),
      created: new Date().toISOString(),
      ...(opts.x509 ? { authentication: 'x509_ca' as const } : {}),
    };
    const next = { ...this.dataDir.readDevices(), [deviceId]: record };
    this.dataDir.writeDevices(next);
    this.devices = next;
    return record;
  }

  /**
   * Replaces one of a device's two keys with a fresh one and returns the record. The other key keeps
   * working, so a fleet rolls over without downtime: move devices to the other key, then rotate this one.
   */
  rotateKey(deviceId: string, which: KeyName): DeviceRecord {
    const current = this.dataDir.readDevices();
    const record = Object.hasOwn(current, deviceId) ? current[deviceId] : undefined;
    if (!record) throw new DevstreamsError('EUSAGE', `device "${deviceId}" is not registered`);
    if (record.authentication === 'x509_ca') throw new DevstreamsError('EUSAGE', `device "${deviceId}" authenticates with an X.509 certificate, not keys`);
    const next: DeviceRecord = { ...record, [`${which}_key`]: newKey() };
    const devices = { ...current, [deviceId]: next };
    this.dataDir.writeDevices(devices);
    this.devices = devices;
    return next;
  }
}
