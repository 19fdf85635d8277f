/**
 * Data plane: a WebSocket whose binary frames are raw bytes (≤ 64 KiB each, IoT Hub's gateway
 * limit). Close codes 4000-4999 and text frames are ours; IoT Hub never sends them.
 */
export const MAX_FRAME_BYTES = 65536;

export const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  /** The device could not open its local target (port refused, host unreachable). */
  TARGET_UNAVAILABLE: 4001,
  /** The other side never connected within the stream handshake timeout. */
  HANDSHAKE_TIMEOUT: 4002,
  /** The other side's connection failed or ended abnormally. */
  PEER_LOST: 4003,
  /** A limit on the device (concurrency, duration, idle). */
  LIMIT: 4004,
} as const;

/** WebSocket close reasons must fit in 123 bytes of UTF-8. */
export function closeReason(text: string): string {
  const buf = Buffer.from(text, 'utf8');
  return buf.length <= 123 ? text : buf.subarray(0, 120).toString('utf8').replace(/\uFFFD$/, '') + '...';
}

export function bearer(token: string): string {
  return `Bearer ${token}`;
}

export function parseBearer(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1]! : null;
}
