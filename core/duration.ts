/**
 * Durations as people write them in YAML: `90s`, `30m`, `2h`, `1h30m`, `500ms`, `1d`. A bare number
 * is refused on purpose: nobody can tell whether `30` meant seconds or minutes.
 */
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION_RE = /^(?:\d+(?:ms|s|m|h|d))+$/;
const PART_RE = /(\d+)(ms|s|m|h|d)/g;

/** Milliseconds, or undefined when the text is not a duration. */
export function parseDurationMs(text: string): number | undefined {
  const t = text.trim();
  if (!DURATION_RE.test(t)) return undefined;
  let ms = 0;
  for (const [, n, unit] of t.matchAll(PART_RE)) ms += Number(n) * UNIT_MS[unit as keyof typeof UNIT_MS];
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** The shortest of `1h30m`, `90s`, `250ms` that says the same. */
export function formatDurationMs(ms: number): string {
  if (ms < 1000 || ms % 1000 !== 0) return `${ms}ms`;
  let s = ms / 1000;
  let out = '';
  for (const [unit, size] of [['d', 86_400], ['h', 3_600], ['m', 60]] as const) {
    if (s >= size) {
      out += `${Math.floor(s / size)}${unit}`;
      s %= size;
    }
  }
  return s ? `${out}${s}s` : out;
}
