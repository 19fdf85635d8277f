import { describeFdExhaustion, isFdExhaustion } from './fd-limit';

/**
 * Turns connection failures into sentences a person can act on: a certificate the agent does not
 * trust (and which CA file it used), refused credentials, a hub that cannot be reached.
 */
const CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export function isCertificateError(err: unknown): boolean {
  return CERT_CODES.has((err as NodeJS.ErrnoException)?.code ?? '');
}

export interface ConnectErrorContext {
  hub: string;
  caFile?: string | undefined;
  /** Who is speaking, for the clock hint: an agent says "this device", the service side "this machine". */
  machine?: 'device' | 'machine';
  now?: number;
}

export function describeConnectError(err: unknown, ctx: ConnectErrorContext): string {
  const e = err as NodeJS.ErrnoException & { reason?: string };
  const code = e?.code ?? '';
  const trust = ctx.caFile ? `the CA file in use is ${ctx.caFile}` : 'no CA file is configured, so only the system CAs are trusted';
  if (code === 'CERT_NOT_YET_VALID') {
    // The certificate is fine; the clock is not (a Pi without a real-time clock, before NTP answers).
    const now = new Date(ctx.now ?? Date.now()).toISOString();
    return `this ${ctx.machine ?? 'machine'}'s clock is behind: it says ${now}, before the hub's certificate at ${ctx.hub} became valid (CERT_NOT_YET_VALID); fix the clock (NTP: is the network up, is UDP 123 allowed?)`;
  }
  if (CERT_CODES.has(code)) {
    return `the hub's certificate at ${ctx.hub} is not trusted (${code}: ${e.message}); ${trust}`;
  }
  if (code === 'ECONNREFUSED') return `cannot reach the hub at ${ctx.hub}: connection refused`;
  if (isFdExhaustion(e)) return `cannot connect to the hub at ${ctx.hub}: ${describeFdExhaustion(e)}`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot resolve the hub's host name in ${ctx.hub} (DNS: ${code})`;
  if (code === 'ETIMEDOUT' || code === 'ECONNRESET' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
    return `cannot reach the hub at ${ctx.hub}: ${code}`;
  }
  // MQTT CONNACK refusals (mqtt.js: "Connection refused: Not authorized", code 5)
  if (typeof e?.code === 'number') {
    const rc = e.code as unknown as number;
    if (rc === 4 || rc === 5) return `the hub refused the device's credentials (${e.message}): check hub.connection_string and the device's registration`;
    return `the hub refused the connection (${e.message})`;
  }
  return e?.message ?? String(err);
}
