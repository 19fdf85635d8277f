import { describe, expect, it } from 'vitest';
import { IdleCollector } from '../agent/idle-gc';

const DELAY_MS = 30;

/** A collector whose collections are counted, and a promise for its next one. */
function counted(delayMs = DELAY_MS): { c: IdleCollector; count: () => number; next: () => Promise<void> } {
  let n = 0;
  let wake: (() => void) | undefined;
  const c = new IdleCollector(() => {
    n++;
    wake?.();
  }, delayMs);
  return { c, count: () => n, next: () => new Promise<void>((resolve) => (wake = resolve)) };
}

/** A WeakRef to an object nothing else holds, made in its own job so V8 does not keep it for this one. */
async function droppedObject(): Promise<WeakRef<object>> {
  const ref = new WeakRef({ payload: new Array(100_000).fill(1) });
  await new Promise((resolve) => setImmediate(resolve));
  return ref;
}

describe('IdleCollector (agent/idle-gc.ts): one full collection once no stream is open', () => {
  it('collects once after the delay: an object nothing holds is gone afterwards', async () => {
    const ref = await droppedObject();
    const { c, count, next } = counted();
    const collected = next();
    c.idle();
    await collected;
    expect(count()).toBe(1);
    expect(ref.deref()).toBeUndefined();
  });

  it('a stream opening before the delay cancels it; stop() does too', async () => {
    const busy = counted();
    busy.c.idle();
    busy.c.busy();
    const stopped = counted();
    stopped.c.idle();
    stopped.c.stop();
    // A reference collector armed later with a longer delay: its timer fires after theirs would have.
    const ref = counted(DELAY_MS * 3);
    const done = ref.next();
    ref.c.idle();
    await done;
    expect(busy.count()).toBe(0);
    expect(stopped.count()).toBe(0);
  });

  it('idle() again re-arms: a burst of closes collects once', async () => {
    const { c, count, next } = counted();
    const collected = next();
    for (let i = 0; i < 5; i++) c.idle();
    await collected;
    const ref = counted(DELAY_MS * 3);
    const done = ref.next();
    ref.c.idle();
    await done;
    expect(count()).toBe(1);
  });
});
