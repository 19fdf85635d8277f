import { WebSocket } from 'ws';
import { bearer } from '../wire';
import { ProxyAgent, proxyFor } from './proxy';

export const STREAM_CONNECT_TIMEOUT_MS = 30_000;
/** What the device accepts in one frame from the hub. IoT Hub sends ≤ 64 KiB; leave room for others. */
const MAX_INBOUND_FRAME_BYTES = 1024 * 1024;

function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

export interface DialOptions {
  /** Proxy setting from config (`none` or a URL); HTTPS_PROXY/NO_PROXY otherwise. */
  proxy?: string | undefined;
  /** Turns TLS verification off (agent `insecure: true`); the caller logs it loudly. */
  insecure?: boolean;
}

/** Dials the streaming URL the way IoT Hub expects: Bearer token, no subprotocol, no redirects. */
export function dialStream(url: string, authToken: string, caPem?: Buffer, dial: DialOptions = {}): WebSocket {
  const { hostname, port } = new URL(url);
  const proxy = proxyFor(hostname, port === '' ? 443 : Number(port), dial.proxy);
  return new WebSocket(url, {
    headers: { Authorization: bearer(authToken) },
    perMessageDeflate: false,
    followRedirects: false,
    handshakeTimeout: STREAM_CONNECT_TIMEOUT_MS,
    maxPayload: MAX_INBOUND_FRAME_BYTES,
    // An all-zero masking key: ws then skips masking here and unmasking at the hub (both were
    // pure-JS loops costing ~30% of connect's and the hub's CPU per byte; see docs/benchmarks.md).
    // Masking guards browsers against cache poisoning by cleartext proxies; this is not a browser
    // and the connection is TLS, so no intermediary reads the frames. Any server unmasks zero fine.
    generateMask: zeroMask,
    rejectUnauthorized: !dial.insecure,
    ...(caPem ? { ca: caPem } : {}),
    ...(proxy ? { agent: new ProxyAgent(proxy) } : {}),
  });
}

/**
 * Closes a streaming WebSocket that no tunnel has taken. It must be reading (not paused) or the
 * close handshake cannot finish and the peer waits for the 30 s close timeout.
 */
export function closeUnused(ws: WebSocket, code: number, reason: string): void {
  if (ws.isPaused) ws.resume();
  if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code, reason);
}
