import { WebSocket } from 'ws';
import { bearer } from '../wire';

export const STREAM_CONNECT_TIMEOUT_MS = 30_000;
/** What the device accepts in one frame from the hub. IoT Hub sends ≤ 64 KiB; leave room for others. */
const MAX_INBOUND_FRAME_BYTES = 1024 * 1024;

/** Dials the streaming URL the way IoT Hub expects: Bearer token, no subprotocol, no redirects. */
export function dialStream(url: string, authToken: string, caPem?: Buffer): WebSocket {
  return new WebSocket(url, {
    headers: { Authorization: bearer(authToken) },
    perMessageDeflate: false,
    followRedirects: false,
    handshakeTimeout: STREAM_CONNECT_TIMEOUT_MS,
    maxPayload: MAX_INBOUND_FRAME_BYTES,
    rejectUnauthorized: true,
    ...(caPem ? { ca: caPem } : {}),
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
