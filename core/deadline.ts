/**
 * `promise`'s value, or undefined when `ms` passed first (a rejection still rejects). The timer is
 * cleared either way, so a finished wait holds nothing open. Every close path that must not hang
 * (a stuck DISCONNECT, a reading that never comes, a child that will not say it exited) waits with it.
 */
export async function withinMs<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([promise, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for every promise to settle, or for `ms` to pass, whichever comes first; true when all settled. */
export async function settledWithin(promises: Iterable<Promise<unknown>>, ms: number): Promise<boolean> {
  return (await withinMs(Promise.allSettled([...promises]), ms)) !== undefined;
}
