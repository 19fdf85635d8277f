import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Bearer tokens for the streaming endpoint: bound to one stream, one side and one device, short-lived,
 * signed with the hub's signing key (any hub instance sharing the key can verify them). Single use
 * is enforced by the endpoint that pairs the stream.
 */
export type StreamSide = 'device' | 'service';

export interface StreamTokenClaims {
  streamId: string;
  side: StreamSide;
  deviceId: string;
  /** Expiry, ms since the epoch. */
  exp: number;
  /** Who asked for the stream (the operator's SharedAccessKeyName), for the audit line. */
  operator?: string;
  /** The service (stream name) asked for, for the audit line. */
  service?: string;
}

const VERSION = 'dst1';

export function newStreamId(): string {
  return randomBytes(16).toString('hex');
}

function mac(key: string, payload: string): Buffer {
  return createHmac('sha256', Buffer.from(key, 'base64')).update(payload).digest();
}

export function signStreamToken(key: string, claims: StreamTokenClaims): string {
  const payload = Buffer.from(
    JSON.stringify({ s: claims.streamId, t: claims.side, d: claims.deviceId, e: claims.exp, ...(claims.operator ? { o: claims.operator } : {}), ...(claims.service ? { n: claims.service } : {}) }),
  ).toString('base64url');
  return `${VERSION}.${payload}.${mac(key, payload).toString('base64url')}`;
}

/** Returns the claims, or why the token is refused (never throws). */
export function verifyStreamToken(key: string, token: string, nowMs = Date.now()): StreamTokenClaims | { refused: string } {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== VERSION) return { refused: 'malformed token' };
  const [, payload, sig] = parts as [string, string, string];
  const given = Buffer.from(sig, 'base64url');
  const expected = mac(key, payload);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { refused: 'bad signature' };
  let c: { s?: unknown; t?: unknown; d?: unknown; e?: unknown; o?: unknown; n?: unknown };
  try {
    c = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return { refused: 'malformed token' };
  }
  if (typeof c.s !== 'string' || (c.t !== 'device' && c.t !== 'service') || typeof c.d !== 'string' || typeof c.e !== 'number') {
    return { refused: 'malformed token' };
  }
  if (c.e <= nowMs) return { refused: 'token expired' };
  return {
    streamId: c.s,
    side: c.t,
    deviceId: c.d,
    exp: c.e,
    ...(typeof c.o === 'string' ? { operator: c.o } : {}),
    ...(typeof c.n === 'string' ? { service: c.n } : {}),
  };
}
