import { DevstreamsError } from './errors';

/** `HostName=…;DeviceId=…;SharedAccessKey=…` */
export interface DeviceConnectionString {
  hostName: string;
  deviceId: string;
  moduleId?: string;
  sharedAccessKey?: string;
  /** `x509=true`: the device authenticates with a client certificate instead of a key. */
  x509: boolean;
}

/** `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` */
export interface ServiceConnectionString {
  hostName: string;
  sharedAccessKeyName: string;
  sharedAccessKey: string;
}

/** Splits `k=v;k=v` on `;`, then each part on its first `=` only (keys hold base64 with `=`). */
export function parseConnectionStringFields(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const part of text.trim().split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) {
      throw new DevstreamsError('EMALFORMED_CONNECTION_STRING', `connection string part "${redactPart(part)}" is not key=value`);
    }
    fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return fields;
}

function redactPart(part: string): string {
  // Never echo what could be a key back into a log or terminal.
  return part.length > 12 ? `${part.slice(0, 12)}…` : part;
}

function required(fields: Map<string, string>, key: string, kind: string): string {
  const value = fields.get(key);
  if (!value) {
    throw new DevstreamsError('EMALFORMED_CONNECTION_STRING', `${kind} connection string has no ${key}`);
  }
  return value;
}

export function parseDeviceConnectionString(text: string): DeviceConnectionString {
  const f = parseConnectionStringFields(text);
  const x509 = (f.get('x509') ?? '').toLowerCase() === 'true';
  const key = f.get('SharedAccessKey');
  if (!x509 && !key) {
    throw new DevstreamsError('EMALFORMED_CONNECTION_STRING', 'device connection string has neither SharedAccessKey nor x509=true');
  }
  if (key !== undefined) assertBase64Key(key, 'SharedAccessKey');
  return {
    hostName: required(f, 'HostName', 'device'),
    deviceId: required(f, 'DeviceId', 'device'),
    ...(f.get('ModuleId') ? { moduleId: f.get('ModuleId') } : {}),
    ...(key ? { sharedAccessKey: key } : {}),
    x509,
  };
}

export function parseServiceConnectionString(text: string): ServiceConnectionString {
  const f = parseConnectionStringFields(text);
  const key = required(f, 'SharedAccessKey', 'service');
  assertBase64Key(key, 'SharedAccessKey');
  return {
    hostName: required(f, 'HostName', 'service'),
    sharedAccessKeyName: required(f, 'SharedAccessKeyName', 'service'),
    sharedAccessKey: key,
  };
}

export function formatDeviceConnectionString(c: { hostName: string; deviceId: string; sharedAccessKey: string } | { hostName: string; deviceId: string; x509: true }): string {
  if ('x509' in c) return `HostName=${c.hostName};DeviceId=${c.deviceId};x509=true`;
  return `HostName=${c.hostName};DeviceId=${c.deviceId};SharedAccessKey=${c.sharedAccessKey}`;
}

export function formatServiceConnectionString(c: ServiceConnectionString): string {
  return `HostName=${c.hostName};SharedAccessKeyName=${c.sharedAccessKeyName};SharedAccessKey=${c.sharedAccessKey}`;
}

function assertBase64Key(key: string, name: string): void {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key) || Buffer.from(key, 'base64').length === 0) {
    throw new DevstreamsError('EMALFORMED_CONNECTION_STRING', `${name} is not base64`);
  }
}

/** Splits IoT Hub's HostName, which for our hub may carry a port (`hub.local:8443`). */
export function splitHostName(hostName: string, defaultPort = 443): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(hostName) ?? /^([^:]+)(?::(\d+))?$/.exec(hostName);
  if (!m) throw new DevstreamsError('EMALFORMED_CONNECTION_STRING', `HostName "${hostName}" is not host or host:port`);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new DevstreamsError('EMALFORMED_CONNECTION_STRING', `HostName "${hostName}" has an invalid port`);
  }
  return { host: m[1]!, port };
}
