import { COMMIT, VERSION } from '../core/version';
import { nodeLineEndOfLife } from './node-lines';
import { systemNodePackage, systemNodeText } from './system-node';

/** Set by scripts/binary/build.mjs in a single executable: the Node it embeds and when that Node line ends. */
declare const __DEVSTREAMS_EMBEDDED_NODE__: EmbeddedNode | undefined;

const DAY_MS = 86_400_000;

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
export function runtimeEnded(e: Pick<EmbeddedNode, 'endOfLife'>, now = Date.now()): boolean {
  return now >= Date.parse(`${e.endOfLife}T00:00:00Z`);
}

/** "end of life 2028-04-30", or "end of life since 2026-04-30, no security fixes" once past. */
function lifeText(endOfLife: string, now: number): string {
  return runtimeEnded({ endOfLife }, now) ? `end of life since ${endOfLife}, no security fixes` : `end of life ${endOfLife}`;
}

/** "released 2024-01-09, 1056 days old": the embedded Node's age, where the build knows its release date. */
export function runtimeAge(e: EmbeddedNode, now = Date.now()): string | undefined {
  if (!e.released) return undefined;
  return `released ${e.released}, ${Math.floor((now - Date.parse(`${e.released}T00:00:00Z`)) / DAY_MS)} days old`;
}

/** Where the runtime comes from: embedded (with its age), a distribution's package (whose support), or a path. */
export function runtimeText(now = Date.now()): string {
  const e = embeddedNode();
  if (e) {
    const age = runtimeAge(e, now);
    return `(embedded${age ? `, ${age}` : ''}; ${lifeText(e.endOfLife, now)})`;
  }
  const pkg = systemNodePackage({ full: true });
  if (pkg?.fromDistribution) return `(${process.execPath}: ${systemNodeText(pkg)})`;
  // Nobody but upstream patches this node: upstream's date is the one that counts.
  const where = pkg ? `${process.execPath}: ${systemNodeText(pkg)}` : process.execPath;
  const end = nodeLineEndOfLife(process.version);
  return end ? `(${where}; ${lifeText(end, now)})` : `(${where})`;
}

export function versionText(): string {
  return `devstreams ${VERSION} (commit ${COMMIT}) node ${process.version} ${process.platform}-${process.arch} ${runtimeText()}`;
}

/**
 * What the agent warns of at start, if the runtime it runs on gets no security fixes: an embedded
 * Node past its end of life, or a distribution's nodejs whose support the distribution ended
 * (debian-security-support's list). Undefined when nothing is known to be wrong.
 */
export function unsupportedRuntime(now = Date.now()): { message: string; fields: Record<string, string> } | undefined {
  const e = embeddedNode();
  if (e) {
    if (!runtimeEnded(e, now)) return undefined;
    const age = runtimeAge(e, now);
    return {
      fields: { node: e.version, end_of_life: e.endOfLife, ...(e.released ? { released: e.released } : {}) },
      message: `this executable embeds node ${e.version}${age ? ` (${age})` : ''}, end of life since ${e.endOfLife} (no security fixes): prefer the package that runs on the system's maintained nodejs (docs/packaging.md)`,
    };
  }
  const pkg = systemNodePackage();
  if (!pkg?.supportEnded) return undefined;
  return {
    fields: { node: process.version, package: pkg.package, support_ended: pkg.supportEnded.date },
    message: `node ${process.version} (${process.execPath}) is ${pkg.os ?? 'the distribution'}'s ${pkg.package}, whose security support ended ${pkg.supportEnded.date}${pkg.supportEnded.details ? ` (${pkg.supportEnded.details})` : ''}: upgrade the system`,
  };
}
