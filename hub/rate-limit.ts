/**
 * Token buckets for stream requests, one per key (`device:<id>`, `service:<policy>`): a burst, then a
 * steady rate. Buckets that are full again are dropped, so memory stays bounded by the keys active
 * within one refill period. The clock is injectable for tests.
 */
export interface RateLimit {
  /** Requests allowed at once. */
  burst: number;
  /** Requests per second after the burst. */
  perSecond: number;
}

/** Defaults: room for a burst of parallel streams (scp -r, a build farm), firm for a runaway loop. */
export const DEFAULT_DEVICE_STREAM_LIMIT: RateLimit = { burst: 100, perSecond: 20 };
export const DEFAULT_SERVICE_STREAM_LIMIT: RateLimit = { burst: 500, perSecond: 100 };

interface Bucket {
  tokens: number;
  atMs: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one token for `key`: 0 when allowed, else the seconds until the next one (for Retry-After). */
  take(key: string): number {
    const now = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.limit.burst, atMs: now };
    b.tokens = Math.min(this.limit.burst, b.tokens + ((now - b.atMs) / 1000) * this.limit.perSecond);
    b.atMs = now;
    if (this.buckets.size > 10_000) this.sweep(now);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      this.buckets.set(key, b);
      return 0;
    }
    this.buckets.set(key, b);
    return Math.max(1, Math.ceil((1 - b.tokens) / this.limit.perSecond));
  }

  private sweep(now: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.atMs) / 1000) * this.limit.perSecond >= this.limit.burst) this.buckets.delete(k);
    }
  }
}
