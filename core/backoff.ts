/**
 * Full-jitter exponential backoff (delay = random(0, min(cap, base * 2^attempt))): a fleet that loses
 * its hub does not come back in lock-step. The attempt count resets only after a connection stayed
 * up for `resetAfterMs`, so a link that flaps right after connecting still backs off.
 */
export interface BackoffOptions {
  baseMs?: number;
  capMs?: number;
  resetAfterMs?: number;
  random?: () => number;
  now?: () => number;
}

export class Backoff {
  private attempt = 0;
  private upSince?: number;
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly resetAfterMs: number;
  private readonly random: () => number;
  private readonly now: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 1000;
    this.capMs = opts.capMs ?? 60_000;
    this.resetAfterMs = opts.resetAfterMs ?? 10_000;
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
  }

  /** The connection is up: start the clock that may reset the attempts. */
  connected(): void {
    this.upSince = this.now();
  }

  /** The connection failed or dropped: how long to wait before the next try. */
  next(): number {
    if (this.upSince !== undefined && this.now() - this.upSince >= this.resetAfterMs) this.attempt = 0;
    this.upSince = undefined;
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.floor(this.random() * ceiling);
  }
}
