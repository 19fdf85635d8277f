import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, type PeerCertificate, type TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import { ProxyAgent, dialThroughProxy, proxyFor } from './proxy';

/**
 * Second looks after a failure, so that the message names the cause: which certificate the hub
 * showed (when it was not trusted) and how far this machine's clock is from the hub's (when the hub
 * refused tokens that look expired to it). Each is one extra connection, made only after a failure,
 * with a short deadline; none of them throws.
 */
export const DIAGNOSE_TIMEOUT_MS = 5_000;
/** Beyond this difference from the hub's clock, SAS tokens look expired (or not yet valid) to it. */
export const CLOCK_SKEW_TOLERANCE_MS = 5 * 60_000;

export interface DiagnoseTarget {
  host: string;
  port: number;
  proxy?: string | undefined;
}

function cn(name: PeerCertificate['subject'] | undefined): string {
  const v = name?.CN;
  return Array.isArray(v) ? v.join(',') : v ?? '(no CN)';
}

/** "CN=hub.example (issued by CN=Some CA, SHA-256 AB:CD…)" for the certificate the server presents, or undefined. */
export async function describePeerCertificate(t: DiagnoseTarget): Promise<string | undefined> {
  let socket: TLSSocket | undefined;
  try {
    const proxy = proxyFor(t.host, t.port, t.proxy);
    const raw = proxy ? await dialThroughProxy(proxy, t.host, t.port, DIAGNOSE_TIMEOUT_MS) : undefined;
    // Verification off on purpose: we only read what the server shows, and send nothing.
    const s = tlsConnect({ host: t.host, port: t.port, rejectUnauthorized: false, ...(raw ? { socket: raw } : {}), ...(isIP(t.host) ? {} : { servername: t.host }) });
    socket = s;
    const cert = await new Promise<PeerCertificate | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), DIAGNOSE_TIMEOUT_MS);
      s.once('secureConnect', () => {
        clearTimeout(timer);
        resolve(s.getPeerCertificate());
      });
      s.once('error', () => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
    if (!cert || !cert.subject) return undefined;
    return `CN=${cn(cert.subject)} (issued by CN=${cn(cert.issuer)}, valid ${cert.valid_from} to ${cert.valid_to}, SHA-256 ${cert.fingerprint256})`;
  } catch {
    return undefined;
  } finally {
    socket?.destroy();
  }
}

/** The hub's clock (its HTTP Date header on GET /healthz) minus ours, in ms; undefined when unknown. */
export async function hubClockOffsetMs(t: DiagnoseTarget & { ca?: Buffer | undefined; insecure?: boolean }, now: () => number = Date.now): Promise<number | undefined> {
  try {
    const proxy = proxyFor(t.host, t.port, t.proxy);
    const date = await new Promise<string | undefined>((resolve) => {
      const req = httpsRequest(
        {
          host: t.host,
          port: t.port,
          path: '/healthz',
          method: 'GET',
          timeout: DIAGNOSE_TIMEOUT_MS,
          rejectUnauthorized: !t.insecure,
          ...(t.ca ? { ca: t.ca } : {}),
          agent: proxy ? new ProxyAgent(proxy) : false,
        },
        (res) => {
          res.resume();
          resolve(res.headers.date);
        },
      );
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(undefined));
      req.end();
    });
    const hubMs = date ? Date.parse(date) : NaN;
    return Number.isFinite(hubMs) ? hubMs - now() : undefined;
  } catch {
    return undefined;
  }
}

/** A sentence about this machine's clock when it is far from the hub's, else undefined. */
export function clockSkewSentence(offsetMs: number | undefined, nowMs: number): string | undefined {
  if (offsetMs === undefined || Math.abs(offsetMs) < CLOCK_SKEW_TOLERANCE_MS) return undefined;
  const minutes = Math.round(Math.abs(offsetMs) / 60_000);
  const hubMs = nowMs + offsetMs;
  return `this machine's clock is ${minutes} min ${offsetMs < 0 ? 'ahead of' : 'behind'} the hub's (local ${new Date(nowMs).toISOString()}, hub ${new Date(hubMs).toISOString()}), so the tokens it signs look expired or not yet valid to the hub: fix the clock (NTP)`;
}
