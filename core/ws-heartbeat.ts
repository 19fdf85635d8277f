import { WebSocket } from 'ws';

/** How often a stream's WebSocket is pinged; a peer silent for two of these is taken for dead. */
export const WS_PING_INTERVAL_MS = 30_000;

/** A peer counts as gone once nothing came from it for this many ping intervals. */
export const WS_SILENT_INTERVALS = 2;

/**
 * The liveness judgment, shared by heartbeat() below (`ws` sockets: agent, connect) and the hub's
 * raw legs (hub/bridge.ts). Ticks twice an interval, so a silent peer is cut between 2 and 2.5
 * intervals after its last frame.
 */
export class LivenessCheck {
  private lastHeardAt = Date.now();
  private lastPingAt = 0;
  private lastTickAt = Date.now();
  readonly tickMs: number;

  constructor(private readonly intervalMs = WS_PING_INTERVAL_MS) {
    this.tickMs = Math.max(1, Math.floor(intervalMs / 2));
  }

  /** Anything came from the peer: a pong, a ping, a frame. */
  heard(): void {
    this.lastHeardAt = Date.now();
  }

  /**
   * One tick: `dead` (cut it), `ping` (send one), or `quiet`. While we are paused (not reading) the
   * peer is not judged. A tick that comes far too late means our own event loop was stalled: what
   * the peer sent meanwhile is still unread, so that round does not judge either.
   */
  tick(paused: boolean): 'dead' | 'ping' | 'quiet' {
    const now = Date.now();
    const stalled = now - this.lastTickAt > this.tickMs + this.intervalMs;
    this.lastTickAt = now;
    if (paused) this.lastHeardAt = now;
    else if (stalled) this.lastHeardAt = Math.max(this.lastHeardAt, now - this.intervalMs);
    else if (now - this.lastHeardAt >= WS_SILENT_INTERVALS * this.intervalMs) return 'dead';
    if (now - this.lastPingAt < this.intervalMs) return 'quiet';
    this.lastPingAt = now;
    return 'ping';
  }

  /** Calls `onTick` every tick, after the poll phase (setImmediate) so frames already received are read first. */
  start(onTick: () => void): NodeJS.Timeout {
    const timer = setInterval(() => setImmediate(onTick), this.tickMs);
    timer.unref();
    return timer;
  }
}

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
 * Stops on close. Frames `ws` does not report as events (binary pieces read past it, core/ws-pieces.ts)
 * are reported with `heard()`.
 */
export function heartbeat(ws: WebSocket, intervalMs = WS_PING_INTERVAL_MS): { heard(): void; stop(): void } {
  const liveness = new LivenessCheck(intervalMs);
  const wsOnHeard = (): void => liveness.heard();
  ws.on('pong', wsOnHeard);
  ws.on('message', wsOnHeard);
  ws.on('ping', wsOnHeard);
  const timer = liveness.start(() => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const verdict = liveness.tick(ws.isPaused);
    if (verdict === 'dead') ws.terminate();
    else if (verdict === 'ping') ws.ping();
  });
  const stop = (): void => {
    clearInterval(timer);
    ws.off('pong', wsOnHeard);
    ws.off('message', wsOnHeard);
    ws.off('ping', wsOnHeard);
  };
  ws.once('close', stop);
  return { heard: wsOnHeard, stop };
}
