import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** V8's gc() from --expose-gc. */
type GcFunction = (opts?: { type: 'major'; flavor: 'last-resort' }) => void;

/** How long the agent must hold no stream before it collects: a burst of streams pays nothing. */
export const IDLE_GC_DELAY_MS = 10_000;

/**
 * One full garbage collection once the last stream has closed, or the agent has connected, and no
 * stream opened for IDLE_GC_DELAY_MS (issue 16). A stream's TLS, WebSocket and socket state is native memory owned by JavaScript
 * objects: it is freed only when V8 collects them, and an idle agent allocates too little for V8 to
 * run the major collection that would; then `trim` gives the freed malloc memory back. x64
 * executable with the unit's environment, 60 s after 500 streams closed: 121-123 MB RSS without,
 * 105-106 MB with the collection alone, 80.6 MB (its idle figure) with the trim as well
 * (docs/benchmarks.md). Both take 50-90 ms, once, of an agent that has nothing else to do.
 */
export class IdleCollector {
  private timer: NodeJS.Timeout | undefined;
  private gc: GcFunction | undefined;

  constructor(
    private readonly onCollected: (info: { ms: number; trimmed: boolean | undefined; trimError?: Error }) => void = () => undefined,
    private readonly delayMs = IDLE_GC_DELAY_MS,
    /** Gives freed native memory back to the system afterwards (agent/malloc-trim.ts); undefined when it cannot. */
    private readonly trim: () => boolean | undefined = () => undefined,
  ) {}

  /** A stream opened: an armed collection waits for the next idle moment. */
  busy(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** No stream is open: collect once after the delay, unless a stream opens first. */
  idle(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.collect(), this.delayMs);
    this.timer.unref();
  }

  stop(): void {
    this.busy();
  }

  private collect(): void {
    this.timer = undefined;
    const gc = this.gcFunction();
    const started = performance.now();
    // A full collection (it frees what the streams held; Node 20's V8 needs this form), then V8's
    // last-resort one, which also gives back the pages the heap grew by (Node 24: heap 19 -> 15 MB).
    gc();
    gc({ type: 'major', flavor: 'last-resort' });
    let trimmed: boolean | undefined;
    let trimError: Error | undefined;
    try {
      trimmed = this.trim();
    } catch (err) {
      trimError = err as Error;
    }
    this.onCollected({ ms: performance.now() - started, trimmed, ...(trimError ? { trimError } : {}) });
  }

  /** V8's gc(), exposed on first use (Node documents this use of --expose-gc via setFlagsFromString). */
  private gcFunction(): GcFunction {
    if (!this.gc) {
      setFlagsFromString('--expose-gc');
      this.gc = runInNewContext('gc') as GcFunction;
    }
    return this.gc;
  }
}
