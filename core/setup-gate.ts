import { DevstreamsError } from '../wire';

/**
 * Bounds work that holds resources while it waits on someone else (a stream being set up holds a
 * client socket and a request to the hub): at most `max` at once; up to `maxWaiting` more wait at
 * most `waitMs` for a place; the rest are refused at once. A refusal says which bound was hit.
 */
export class SetupGate {
  private running = 0;
  private readonly waiting: Array<{ grant: () => void; refuse: (err: Error) => void; timer: NodeJS.Timeout }> = [];

  constructor(
    readonly max: number,
    readonly maxWaiting: number,
    readonly waitMs: number,
  ) {}

  get inProgress(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Resolves with a release function once there is room; rejects (ETHROTTLED) when there is none. */
  acquire(): Promise<() => void> {
    if (this.running < this.max) return Promise.resolve(this.grant());
    if (this.waiting.length >= this.maxWaiting) {
      return Promise.reject(new DevstreamsError('ETHROTTLED', `too many streams being set up (${this.max} at once, ${this.maxWaiting} waiting)`));
    }
    return new Promise((resolve, reject) => {
      const entry = {
        grant: () => resolve(this.grant()),
        refuse: reject,
        timer: setTimeout(() => {
          this.waiting.splice(this.waiting.indexOf(entry), 1);
          reject(new DevstreamsError('ETHROTTLED', `no room to set up the stream within ${Math.round(this.waitMs / 1000)} s (${this.max} being set up at once)`));
        }, this.waitMs),
      };
      this.waiting.push(entry);
    });
  }

  private grant(): () => void {
    this.running++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running--;
      const next = this.waiting.shift();
      if (next) {
        clearTimeout(next.timer);
        next.grant();
      }
    };
  }

  /** Refuses everyone still waiting (stop). */
  clear(): void {
    for (const w of this.waiting.splice(0)) {
      clearTimeout(w.timer);
      w.refuse(new DevstreamsError('ETHROTTLED', 'shutting down'));
    }
  }
}
