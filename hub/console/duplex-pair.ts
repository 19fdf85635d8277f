import { Duplex } from 'node:stream';

/**
 * Two connected in-memory byte streams, like the two ends of a socket pair: what one writes the other
 * reads, with backpressure, and ending or destroying one ends or destroys the other. The console uses
 * it to hand a stream tunnel (core/tunnel.ts) one end and an HTTP client or a browser the other.
 */
class PairEnd extends Duplex {
  peer!: PairEnd;
  /** Our write that waits for the peer's reader. */
  private blocked?: (err?: Error | null) => void;

  constructor() {
    super({ allowHalfOpen: true });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.peer.destroyed) return cb(new Error('the other end is closed'));
    if (this.peer.push(chunk)) cb();
    else this.blocked = cb;
  }

  override _read(): void {
    const cb = this.peer.blocked;
    this.peer.blocked = undefined;
    cb?.();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.peer.destroyed) this.peer.push(null);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const blocked = this.blocked;
    this.blocked = undefined;
    blocked?.(err ?? new Error('closed'));
    if (!this.peer.destroyed) this.peer.destroy();
    cb(err);
  }

  // What node:http asks of a socket it did not create.
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  setTimeout(): this {
    return this;
  }
}

export function duplexPair(): [Duplex, Duplex] {
  const a = new PairEnd();
  const b = new PairEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
