/** Nearest-rank percentile of samples (ms or any unit); NaN for no samples. */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export interface Dist {
  p50: number;
  p99: number;
  max: number;
  n: number;
}

export function dist(samples: number[]): Dist {
  return { p50: round(percentile(samples, 50), 3), p99: round(percentile(samples, 99), 3), max: round(percentile(samples, 100), 3), n: samples.length };
}

export function round(v: number, digits = 2): number {
  if (!Number.isFinite(v)) return v;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** Decimal megabytes (10^6 bytes), the unit every figure in the report uses. */
export const MB = 1_000_000;
export const GiB = 1024 ** 3;
