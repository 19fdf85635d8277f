import { WebSocket } from 'ws';

/** How often a stream's WebSocket is pinged; a peer silent for two of these is taken for dead. */
export const WS_PING_INTERVAL_MS = 30_000;

/**
 * Detects a peer that vanished without closing (half-open TCP: a NAT dropped the mapping, a Pi lost
 * power): ping every interval, and terminate (close 1006, which the tunnel turns into a reset of the
 * local side) when nothing at all came back since the previous ping.
 *
 * While we are not reading (paused for backpressure) or our own sends are queued (the peer is slow to
 * read), a missing pong proves nothing, so the check waits: a stalled reader is not a dead peer.
 * Returns a function that stops the heartbeat; it also stops on close.
 */
export function heartbeat(ws: WebSocket, intervalMs = WS_PING_INTERVAL_MS): () => void {
  let heard = true;
  const wsOnHeard = (): void => {
    heard = true;
  };
  ws.on('pong', wsOnHeard);
  ws.on('message', wsOnHeard);
  ws.on('ping', wsOnHeard);
  const timer = setInterval(() => {
    if (ws.readyState !== WebSocket.OPEN) return;
    if (ws.isPaused || ws.bufferedAmount > 0) {
      heard = true;
      return;
    }
    if (!heard) {
      ws.terminate();
      return;
    }
    heard = false;
    ws.ping();
  }, intervalMs);
  timer.unref();
  const stop = (): void => {
    clearInterval(timer);
    ws.off('pong', wsOnHeard);
    ws.off('message', wsOnHeard);
    ws.off('ping', wsOnHeard);
  };
  ws.once('close', stop);
  return stop;
}
