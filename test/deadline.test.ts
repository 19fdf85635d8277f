import { describe, expect, it } from 'vitest';
import { settledWithin, withinMs } from '../core/deadline';

const after = <T>(ms: number, value: T): Promise<T> => new Promise((resolve) => setTimeout(() => resolve(value), ms));

describe('deadlines (core/deadline.ts)', () => {
  it('withinMs: the value when it comes first, undefined when the deadline does, a rejection as a rejection', async () => {
    expect(await withinMs(Promise.resolve(7), 1000)).toBe(7);
    expect(await withinMs(new Promise<number>(() => undefined), 20)).toBeUndefined();
    await expect(withinMs(Promise.reject(new Error('no')), 1000)).rejects.toThrow('no');
  });

  it('settledWithin: true once all settled (rejections too), false when one is still pending at the deadline', async () => {
    expect(await settledWithin([after(5, 1), Promise.reject(new Error('x'))], 1000)).toBe(true);
    expect(await settledWithin([after(5, 1), new Promise(() => undefined)], 50)).toBe(false);
    expect(await settledWithin([], 10)).toBe(true);
  });
});
