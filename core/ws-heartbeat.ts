import { WebSocket } from 'ws';

/** How often a stream's WebSocket is pinged; a peer silent for two of these is taken for dead. */
export const WS_PING_INTERVAL_MS = 30_000;

/** A peer counts as gone once nothing came from it for this many ping intervals. */
export const WS_SILENT_INTERVALS = 2;

/**
 * Detects a peer that vanished without closing (half-open TCP: a NAT dropped the mapping, a Pi lost
 * power, a hub frozen by SIGSTOP), whatever the stream is doing: idle, sending or receiving.
 *
 * We ping every interval, paused or not: a ping is a control frame, and it is the peer's proof that
 * we are alive even while we read nothing from it. The peer does the same (agent, hub and `connect`
 * all run this), so a live peer is heard from (a pong, its own ping, or any frame) at least once an
 * interval even when it is not reading our queued bytes. Once nothing at all has come for
 * WS_SILENT_INTERVALS intervals, the socket is terminated (close 1006, which the tunnel turns into a
 * reset of the local side, freeing the target connection and the stream slot).
 *
 * The one state that is not judged is our own pause: we are not reading (our local side is the slow
 * one), so the peer's frames wait unread in the kernel. Checking resumes with reading.
 * Returns a function that stops the heartbeat; it also stops on close.
 */
export function heartbeat(ws: WebSocket, intervalMs = WS_PING_INTERVAL_MS): () => void {
  let lastHeardAt = Date.now();
  let lastPingAt = 0;
  const wsOnHeard = (): void => {
    lastHeardAt = Date.now();
  };
  ws.on('pong', wsOnHeard);
  ws.on('message', wsOnHeard);
  ws.on('ping', wsOnHeard);
  // Checked twice an interval, so a silent peer is cut between 2 and 2.5 intervals after its last frame.
  const timer = setInterval(() => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const now = Date.now();
    if (ws.isPaused) lastHeardAt = now;
    else if (now - lastHeardAt >= WS_SILENT_INTERVALS * intervalMs) {
      ws.terminate();
      return;
    }
    if (now - lastPingAt >= intervalMs) {
      lastPingAt = now;
      ws.ping();
    }
  }, Math.max(1, Math.floor(intervalMs / 2)));
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
