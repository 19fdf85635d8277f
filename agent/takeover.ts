/**
 * Tells "another device with my id keeps taking my connection over" from an ordinary drop. MQTT 3.1.1
 * has no reason on a server's close (IoT Hub and the hub simply close the old connection when a new
 * one with the same client id arrives), so this reads the pattern: the hub closed a connection it had
 * accepted (no socket error, no keepalive timeout, not our own renewal), and the reconnect right after
 * was accepted with our session still there (CONNACK session present: the broker kept it, so it did
 * not restart). TAKEOVER_DROPS of those within TAKEOVER_WINDOW_MS is a takeover. A hub that restarted
 * answers without the session (the embedded broker keeps sessions in memory) or fails the reconnect;
 * a revoked credential gets its CONNACK refused; each resets the count, as does a connection that
 * stays up for the window.
 */
export const TAKEOVER_DROPS = 3;
export const TAKEOVER_WINDOW_MS = 10 * 60_000;
/** Once a takeover is suspected, wait this long (full jitter over its upper half) before reconnecting. */
export const TAKEOVER_BACKOFF_MS = 5 * 60_000;

export const TAKEOVER_WARNING =
  'the hub keeps closing this connection right after accepting it: another device is probably connected with this device id (a cloned SD card?). Give each device its own id (devstreams hub add-device); backing off';

export class TakeoverDetector {
  private drops: number[] = [];
  private warnedAtMs?: number;
  private upSinceMs?: number;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly random: () => number = Math.random,
  ) {}

  /** The hub accepted a connection (CONNACK 0); without our session it is a fresh (restarted) broker. */
  connected(sessionPresent: boolean): void {
    this.upSinceMs = this.now();
    if (!sessionPresent) this.drops = [];
  }

  /** A connection attempt failed (unreachable, TLS, CONNACK refused): not a takeover pattern. */
  failed(): void {
    this.drops = [];
    this.upSinceMs = undefined;
  }

  /**
   * The hub closed a connection it had accepted. Returns undefined for an ordinary drop, or the delay
   * before the next reconnect and whether to log the warning (at most once per window).
   */
  droppedByHub(): { delayMs: number; warn: boolean } | undefined {
    const now = this.now();
    if (this.upSinceMs !== undefined && now - this.upSinceMs >= TAKEOVER_WINDOW_MS) this.drops = [];
    this.upSinceMs = undefined;
    this.drops = [...this.drops.filter((t) => now - t < TAKEOVER_WINDOW_MS), now];
    if (this.drops.length < TAKEOVER_DROPS) return undefined;
    const warn = this.warnedAtMs === undefined || now - this.warnedAtMs >= TAKEOVER_WINDOW_MS;
    if (warn) this.warnedAtMs = now;
    return { delayMs: Math.floor(TAKEOVER_BACKOFF_MS * (0.5 + 0.5 * this.random())), warn };
  }
}
