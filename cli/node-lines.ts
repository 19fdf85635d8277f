// When each Node.js release line stops getting fixes upstream (nodejs.org's release schedule), for
// a node that no distribution patches beyond that: `--version` states it for a node on PATH or from
// a vendor's package (NodeSource's follows upstream). Lines not listed here are simply not dated.
export const NODE_LINE_END_OF_LIFE: Record<number, string> = {
  18: '2025-04-30',
  19: '2023-06-01',
  20: '2026-04-30',
  21: '2024-06-01',
  22: '2027-04-30',
  23: '2025-06-01',
  24: '2028-04-30',
  25: '2026-06-01',
  26: '2029-04-30',
};

/** The end of life of the line `version` (such as process.version) belongs to, if known. */
export function nodeLineEndOfLife(version: string): string | undefined {
  return NODE_LINE_END_OF_LIFE[Number(/^v?(\d+)\./.exec(version)?.[1])];
}
