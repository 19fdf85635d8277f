import { createHmac, timingSafeEqual } from 'node:crypto';
import { splitHostName } from './connection-string';
import { DevstreamsError } from './errors';

/** The SDKs sign for an hour and reconnect with a fresh token before it runs out. */
export const SAS_LIFETIME_S = 3600;

/**
 * The hub refuses tokens that expire further ahead than this (device and service tokens alike), so a
 * leaked token is good for a day at most and a session it opened ends within a day. IoT Hub documents
 * no such bound (it disconnects an MQTT device when its token expires, whatever `se` said); the SDKs
 * sign for an hour.
 */
export const MAX_SAS_LIFETIME_S = 24 * 3600;

export interface SasToken {
  /** `sr` exactly as it appears in the token (encoded by C#/Node, raw by the C SDK). */
  srRaw: string;
  /** `sr` decoded: `{host}/devices/{id}` or `{host}`. */
  resource: string;
  /** Signature bytes (base64 decoded from the url-decoded `sig`). */
  sig: string;
  expiresAt: number;
  keyName?: string;
}

export function sasSignature(key: string, srRaw: string, expiresAt: number): string {
  return createHmac('sha256', Buffer.from(key, 'base64')).update(`${srRaw}\n${expiresAt}`).digest('base64');
}

export function deviceResourceUri(hostName: string, deviceId: string, moduleId?: string): string {
  return `${hostName}/devices/${deviceId}${moduleId ? `/modules/${moduleId}` : ''}`;
}

export function createSasToken(opts: {
  resource: string;
  key: string;
  expiresAt: number;
  keyName?: string;
  /** The C SDK does not encode `sr`; C# and Node do. Both must verify. */
  encodeResource?: boolean;
}): string {
  const srRaw = opts.encodeResource === false ? opts.resource : encodeURIComponent(opts.resource);
  const sig = sasSignature(opts.key, srRaw, opts.expiresAt);
  let token = `SharedAccessSignature sr=${srRaw}&sig=${encodeURIComponent(sig)}&se=${opts.expiresAt}`;
  if (opts.keyName) token += `&skn=${encodeURIComponent(opts.keyName)}`;
  return token;
}

export function parseSasToken(token: string): SasToken {
  const prefix = 'SharedAccessSignature ';
  if (typeof token !== 'string' || !token.startsWith(prefix)) {
    throw new DevstreamsError('EMALFORMED_TOKEN', 'token does not start with "SharedAccessSignature "');
  }
  const fields = new Map<string, string>();
  for (const part of token.slice(prefix.length).trim().split('&')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new DevstreamsError('EMALFORMED_TOKEN', 'token field is not key=value');
    fields.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const srRaw = fields.get('sr');
  const sigRaw = fields.get('sig');
  const se = fields.get('se');
  if (!srRaw || !sigRaw || !se) throw new DevstreamsError('EMALFORMED_TOKEN', 'token needs sr, sig and se');
  if (!/^\d{1,12}$/.test(se)) throw new DevstreamsError('EMALFORMED_TOKEN', 'token expiry (se) is not a number of seconds');
  let resource: string;
  let sig: string;
  let keyName: string | undefined;
  try {
    resource = decodeURIComponent(srRaw);
    sig = decodeURIComponent(sigRaw);
    keyName = fields.has('skn') ? decodeURIComponent(fields.get('skn')!) : undefined;
  } catch {
    throw new DevstreamsError('EMALFORMED_TOKEN', 'token has a malformed percent-encoding');
  }
  return { srRaw, resource, sig, expiresAt: Number(se), ...(keyName !== undefined ? { keyName } : {}) };
}

/**
 * Checks signature and expiry, and that the expiry is at most MAX_SAS_LIFETIME_S ahead. The HMAC is
 * computed over `sr` as it stands in the token, so the C SDK's raw form and the encoded form both verify.
 */
export function verifySasToken(token: SasToken, key: string, nowS = Math.floor(Date.now() / 1000)): void {
  const expected = Buffer.from(sasSignature(key, token.srRaw, token.expiresAt), 'base64');
  const given = Buffer.from(token.sig, 'base64');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new DevstreamsError('EBAD_SIGNATURE', 'token signature does not match the key');
  }
  if (token.expiresAt <= nowS) {
    throw new DevstreamsError('ETOKEN_EXPIRED', `token expired ${nowS - token.expiresAt} s ago (check the clock)`);
  }
  if (token.expiresAt > nowS + MAX_SAS_LIFETIME_S) {
    throw new DevstreamsError('ETOKEN_TOO_LONG', `token expires ${token.expiresAt - nowS} s from now: the hub accepts at most ${MAX_SAS_LIFETIME_S} s (sign for less, or check the clock)`);
  }
}

/**
 * Throws ETOKEN_SCOPE unless the token's `sr` covers `target` on a hub known by `hostNames`. IoT Hub's
 * rule: `sr` is the hub's host name, optionally followed by a path that must be a prefix (whole
 * segments) of the resource asked for, so `{host}/devices/pi-1` is good for device pi-1 only. Host
 * names compare without case and port (a hub answers on several ports; the signature binds the key).
 */
export function assertSasScope(token: SasToken, hostNames: readonly string[], target: string): void {
  const resource = token.resource.replace(/\/+$/, '');
  const slash = resource.indexOf('/');
  const host = slash < 0 ? resource : resource.slice(0, slash);
  const path = slash < 0 ? '' : resource.slice(slash + 1).toLowerCase();
  let bare: string;
  try {
    bare = splitHostName(host).host.toLowerCase();
  } catch {
    bare = '';
  }
  const known = hostNames.some((name) => {
    try {
      return splitHostName(name).host.toLowerCase() === bare;
    } catch {
      return false;
    }
  });
  if (!known) throw new DevstreamsError('ETOKEN_SCOPE', `token is for "${host.slice(0, 100)}", not for this hub`);
  const wanted = target.replace(/^\/+|\/+$/g, '').toLowerCase();
  if (path !== '' && wanted !== path && !wanted.startsWith(`${path}/`)) {
    throw new DevstreamsError('ETOKEN_SCOPE', `token is scoped to "${path.slice(0, 100)}", not to "${wanted.slice(0, 100)}"`);
  }
}
