import { createHmac, timingSafeEqual } from 'node:crypto';
import { DevstreamsError } from './errors';

/** The SDKs sign for an hour and reconnect with a fresh token before it runs out. */
export const SAS_LIFETIME_S = 3600;

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
 * Checks signature and expiry. The HMAC is computed over `sr` as it stands in the token, so the C
 * SDK's raw form and the encoded form both verify.
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
}
