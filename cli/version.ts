import { COMMIT, VERSION } from '../core/version';

/** Set by scripts/binary/build.mjs in a single executable: the Node it embeds and when that Node line ends. */
declare const __DEVSTREAMS_EMBEDDED_NODE__: EmbeddedNode | undefined;

export interface EmbeddedNode {
  version: string;
  /** YYYY-MM-DD this Node version was released, where the build knows it. */
  released?: string;
  /** YYYY-MM-DD its release line reaches end of life (nodejs.org's schedule). */
  endOfLife: string;
}

/** The Node this executable carries, when it is running on it (not when the bundle runs on a system node). */
export function embeddedNode(): EmbeddedNode | undefined {
  const e = typeof __DEVSTREAMS_EMBEDDED_NODE__ === 'object' ? __DEVSTREAMS_EMBEDDED_NODE__ : undefined;
  return e && e.version === process.version ? e : undefined;
}

/** True once the runtime's release line is past its end of life (no more security fixes upstream). */
export function runtimeEnded(e: EmbeddedNode, now = Date.now()): boolean {
  return now >= Date.parse(`${e.endOfLife}T00:00:00Z`);
}

/** Where the runtime comes from: embedded (with its age) or the node binary that runs the bundle. */
export function runtimeText(): string {
  const e = embeddedNode();
  if (!e) return `(${process.execPath})`;
  return `(embedded${e.released ? `, released ${e.released}` : ''}; ${runtimeEnded(e) ? 'end of life since' : 'end of life'} ${e.endOfLife})`;
}

export function versionText(): string {
  return `devstreams ${VERSION} (commit ${COMMIT}) node ${process.version} ${process.platform}-${process.arch} ${runtimeText()}`;
}
