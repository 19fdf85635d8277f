// When each Node.js release line stops getting fixes upstream (nodejs.org's release schedule), for
// a node that no distribution patches beyond that: `--version` states it for a node on PATH or from
// a vendor's package (NodeSource's follows upstream), and scripts/binary/build.mjs for the Node each
// single executable embeds. One table (node-lines.json) for both; lines not in it are not dated.
import endOfLifeByLine from './node-lines.json';

export const NODE_LINE_END_OF_LIFE: Readonly<Record<string, string>> = endOfLifeByLine;

/** The end of life of the line `version` (such as process.version) belongs to, if known. */
export function nodeLineEndOfLife(version: string): string | undefined {
  const major = /^v?(\d+)\./.exec(version)?.[1];
  return major === undefined ? undefined : NODE_LINE_END_OF_LIFE[major];
}
