import { randomBytes } from 'node:crypto';
import type { Logger } from '../core/log';
import { DevstreamsError } from '../wire';
import { FollowedRegistry, RegistryShapeError, entriesToJson, isJsonObject, isObjectName, keysOfBoth } from './registry-file';

/**
 * The device registry (devices.json, 0600): each device's two keys (or X.509), when it was created,
 * and whether it is enabled. A running hub follows the file as it changes (`hub add-device`,
 * `remove-device`, `disable-device`, `rotate-key`, or an edit by hand) and announces every change
 * as a `change` event, which the parts that hold sessions use to end the ones a change revokes.
 * Kept in a Map: device ids come from the network and from people, and must never reach an
 * object's prototype.
 */
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
  /** IoT Hub's device `status`: a disabled device is refused at connect and gets no streams. */
  status?: 'enabled' | 'disabled';
}

export type KeyName = 'primary' | 'secondary';

/**
 * What changed for one device. `removed`, `disabled`, `keys-changed` (with the keys replaced) and
 * `authentication-changed` revoke the credentials a session was opened with; `added` and `enabled`
 * revoke nothing.
 */
export type RegistryChangeKind = 'added' | 'removed' | 'disabled' | 'enabled' | 'keys-changed' | 'authentication-changed';

export interface RegistryChange {
  deviceId: string;
  change: RegistryChangeKind;
  /** `keys-changed`: which keys were replaced (a session opened with the other one is still good). */
  keys?: KeyName[];
}

export function newKey(): string {
  return randomBytes(32).toString('base64');
}

/** IoT Hub device ids: up to 128 of letters, digits and `-.%_*?!(),=@$'` with `:` too; we allow a safe subset. */
const DEVICE_ID = /^[A-Za-z0-9\-._:@]{1,128}$/;

/** Why `id` cannot be a device id, or undefined when it can. */
export function deviceIdProblem(id: string): string | undefined {
  if (!DEVICE_ID.test(id)) return `device id "${id.slice(0, 140)}" must be 1-128 of letters, digits and - . _ : @`;
  // Names that mean something to JavaScript objects (`__proto__`, `constructor`, …) or to paths (`.`, `..`).
  if (isObjectName(id) || /^\.+$/.test(id)) return `device id "${id}" is reserved: choose another`;
  return undefined;
}

export function assertDeviceId(id: string): void {
  const problem = deviceIdProblem(id);
  if (problem) throw new DevstreamsError('EUSAGE', problem);
}

function decodeRecord(id: string, raw: unknown): DeviceRecord {
  const bad = (why: string): RegistryShapeError => new RegistryShapeError(`device "${id}": ${why}`, id);
  if (!isJsonObject(raw)) throw bad('not an object');
  const { primary_key, secondary_key, created, authentication, status } = raw;
  if (typeof primary_key !== 'string' || typeof secondary_key !== 'string') throw bad('primary_key and secondary_key must be strings');
  if (authentication !== undefined && authentication !== 'sas' && authentication !== 'x509_ca') throw bad('authentication must be "sas" or "x509_ca"');
  if (status !== undefined && status !== 'enabled' && status !== 'disabled') throw bad('status must be "enabled" or "disabled"');
  return {
    primary_key,
    secondary_key,
    created: typeof created === 'string' ? created : '',
    ...(authentication ? { authentication } : {}),
    ...(status ? { status } : {}),
  };
}

export function decodeDevices(raw: unknown): Map<string, DeviceRecord> {
  if (!isJsonObject(raw) || !isJsonObject(raw.devices)) throw new RegistryShapeError('expected {"devices": {ID: {...}, ...}}');
  const devices = new Map<string, DeviceRecord>();
  for (const [id, record] of Object.entries(raw.devices)) {
    const problem = deviceIdProblem(id);
    if (problem) throw new RegistryShapeError(problem, id);
    devices.set(id, decodeRecord(id, record));
  }
  return devices;
}

function encodeDevices(devices: Map<string, DeviceRecord>): unknown {
  return { devices: entriesToJson(devices) };
}

/** The changes between two registries, in a stable order (by device id). */
export function diffRegistries(prev: Map<string, DeviceRecord>, next: Map<string, DeviceRecord>): RegistryChange[] {
  const changes: RegistryChange[] = [];
  for (const deviceId of keysOfBoth(prev, next)) {
    const a = prev.get(deviceId);
    const b = next.get(deviceId);
    if (!a && b) {
      changes.push({ deviceId, change: 'added' });
      if (b.status === 'disabled') changes.push({ deviceId, change: 'disabled' });
      continue;
    }
    if (a && !b) {
      changes.push({ deviceId, change: 'removed' });
      continue;
    }
    if (!a || !b) continue;
    if ((a.authentication ?? 'sas') !== (b.authentication ?? 'sas')) changes.push({ deviceId, change: 'authentication-changed' });
    const keys: KeyName[] = [];
    if (a.primary_key !== b.primary_key) keys.push('primary');
    if (a.secondary_key !== b.secondary_key) keys.push('secondary');
    if (keys.length > 0) changes.push({ deviceId, change: 'keys-changed', keys });
    const wasDisabled = a.status === 'disabled';
    const isDisabled = b.status === 'disabled';
    if (wasDisabled !== isDisabled) changes.push({ deviceId, change: isDisabled ? 'disabled' : 'enabled' });
  }
  return changes;
}

export interface WriteOptions {
  /** Write over a devices.json that does not parse (it is set aside first). */
  force?: boolean;
}

export class DeviceRegistry extends FollowedRegistry<Map<string, DeviceRecord>, RegistryChange> {
  /** `dataDir` is the hub data directory (devices.json inside it). */
  constructor(dataDir: { path(name: string): string }, log?: Logger) {
    super(
      { path: dataDir.path('devices.json'), mode: 0o600, decode: decodeDevices, encode: encodeDevices, empty: () => new Map(), ...(log ? { log } : {}) },
      diffRegistries,
      (c) => [{ device: c.deviceId, change: c.change, ...(c.keys ? { keys: c.keys } : {}) }, `registry: device ${c.change}`],
    );
  }

  get(deviceId: string): DeviceRecord | undefined {
    return this.file.current().get(deviceId);
  }

  isEnabled(deviceId: string): boolean {
    const record = this.get(deviceId);
    return record !== undefined && record.status !== 'disabled';
  }

  list(): string[] {
    return [...this.file.current().keys()];
  }

  add(deviceId: string, opts: { x509?: boolean } & WriteOptions = {}): DeviceRecord {
    assertDeviceId(deviceId);
    const current = this.file.readForWrite(opts.force);
    const existing = current.get(deviceId);
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
    this.file.write(new Map(current).set(deviceId, record));
    return record;
  }

  /** Removes a device; a running hub refuses it from now on and ends its sessions. */
  remove(deviceId: string, opts: WriteOptions = {}): void {
    const current = this.file.readForWrite(opts.force);
    this.existing(current, deviceId);
    const next = new Map(current);
    next.delete(deviceId);
    this.file.write(next);
  }

  /** Disables or enables a device; returns false when it already was. */
  setStatus(deviceId: string, status: 'enabled' | 'disabled', opts: WriteOptions = {}): boolean {
    const current = this.file.readForWrite(opts.force);
    const record = this.existing(current, deviceId);
    if ((record.status ?? 'enabled') === status) return false;
    const { status: _old, ...rest } = record;
    this.file.write(new Map(current).set(deviceId, status === 'disabled' ? { ...rest, status } : rest));
    return true;
  }

  /**
   * Replaces one of a device's two keys with a fresh one and returns the record. The other key keeps
   * working, so a fleet rolls over without downtime: move devices to the other key, then rotate this one.
   */
  rotateKey(deviceId: string, which: KeyName, opts: WriteOptions = {}): DeviceRecord {
    const current = this.file.readForWrite(opts.force);
    const record = this.existing(current, deviceId);
    if (record.authentication === 'x509_ca') throw new DevstreamsError('EUSAGE', `device "${deviceId}" authenticates with an X.509 certificate, not keys`);
    const next: DeviceRecord = { ...record, [`${which}_key`]: newKey() };
    this.file.write(new Map(current).set(deviceId, next));
    return next;
  }

  private existing(devices: Map<string, DeviceRecord>, deviceId: string): DeviceRecord {
    const record = devices.get(deviceId);
    if (!record) throw new DevstreamsError('EUSAGE', `device "${deviceId.slice(0, 140)}" is not registered`);
    return record;
  }
}
