/**
 * Waits for every promise to settle, or for `ms` to pass, whichever comes first; true when all
 * settled. The timer is cleared either way, so a finished wait holds nothing open.
 */
export async function settledWithin(promises: Iterable<Promise<unknown>>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([Promise.allSettled([...promises]).then(() => true as const), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
