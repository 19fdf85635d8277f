// Which distribution package the node running the bundle comes from (Debian's nodejs, for the armhf
// .deb), and what that distribution says of its security support. Debian keeps patching the Node it
// shipped after upstream ends the line (bookworm's 18.20.4 gets ~deb12uN updates), so `--version`
// and the agent's start warning speak of the distribution's support, never of upstream's end of life.
// Only dpkg's own files are read (no process is spawned); everything missing means "not known".
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';

const DPKG_DIR = '/var/lib/dpkg';
const OS_RELEASE = '/etc/os-release';
/** debian-security-support's lists, when that package is installed (Debian's `check-support-status`). */
const SECURITY_SUPPORT_DIR = '/usr/share/debian-security-support';
/** Debian's name for Node.js (binary and source package); NodeSource's package has the same name. */
const NODE_PACKAGE = 'nodejs';

export interface SystemNodePackage {
  package: string;
  version?: string;
  /** PRETTY_NAME of /etc/os-release, e.g. "Debian GNU/Linux 12 (bookworm)". */
  os?: string;
  /** The distribution built it (its maintainers), so its security support is the distribution's. */
  fromDistribution: boolean;
  /** From debian-security-support: the distribution stopped supporting it (date, its reason). */
  supportEnded?: { date: string; details: string };
  /** From debian-security-support: supported with limits (its reason). */
  supportLimited?: string;
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** Same device and inode, compared on open descriptors (qemu-user maps a guest's open() into its root, not statx()). */
function sameFile(a: string, b: string): boolean {
  const fds: number[] = [];
  try {
    fds.push(openSync(a, 'r'), openSync(b, 'r'));
    const [x, y] = fds.map((fd) => fstatSync(fd));
    return x!.dev === y!.dev && x!.ino === y!.ino;
  } catch {
    return false;
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/**
 * True when `execPath` is the node binary dpkg installed from `pkg`: the same file (device and inode)
 * as one of the package's `bin/node*` paths, so a symlink or a copy elsewhere is told apart.
 */
export function installedBy(pkg: string, execPath = process.execPath): boolean {
  const list = readText(`${DPKG_DIR}/info/${pkg}.list`);
  if (!list) return false;
  return list.split('\n').some((path) => /\/bin\/node(js)?$/.test(path) && sameFile(path, execPath));
}

/** A package's fields from dpkg's status database, if installed. */
function dpkgFields(pkg: string): Record<string, string> | undefined {
  const status = readText(`${DPKG_DIR}/status`);
  const para = status?.split(/\n\n+/).find((p) => p.startsWith(`Package: ${pkg}\n`) || p.includes(`\nPackage: ${pkg}\n`));
  if (!para) return undefined;
  return Object.fromEntries([...para.matchAll(/^([\w-]+): (.*)$/gm)].map((m) => [m[1]!, m[2]!]));
}

function osRelease(): Record<string, string> {
  const text = readText(OS_RELEASE) ?? '';
  return Object.fromEntries([...text.matchAll(/^(\w+)=("?)(.*)\2$/gm)].map((m) => [m[1]!, m[3]!]));
}

/** Lines of a debian-security-support list naming `source` (its first column is a package name or a regex). */
function securitySupportEntry(file: string, source: string): string[] | undefined {
  for (const line of (readText(`${SECURITY_SUPPORT_DIR}/${file}`) ?? '').split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const cols = line.trim().split(/\s+/);
    try {
      if (new RegExp(`^(?:${cols[0]})$`).test(source)) return cols;
    } catch {
      // a column that is not a valid regex names no package we look for
    }
  }
  return undefined;
}

/**
 * The distribution package of the node running us, or undefined when it is not a dpkg-installed
 * `nodejs` (an embedded node, a tarball, nvm...). `full`: also its version (dpkg's status file, which
 * can be a few MB on a device: only `--version` asks).
 */
export function systemNodePackage(opts: { full?: boolean; execPath?: string } = {}): SystemNodePackage | undefined {
  if (!installedBy(NODE_PACKAGE, opts.execPath)) return undefined;
  const os = osRelease();
  const fields = opts.full ? dpkgFields(NODE_PACKAGE) : undefined;
  const source = (fields?.Source ?? NODE_PACKAGE).split(' ')[0]!;
  const isDebianLike = os.ID === 'debian' || (os.ID_LIKE ?? '').split(' ').includes('debian');
  // NodeSource and others also call their package nodejs: only a package the distribution's own
  // maintainers built is patched by its security team. The maintainer is known with the full record;
  // otherwise a Debian-like system's debian-security-support lists are still what apply to it.
  const fromDistribution = isDebianLike && (fields ? /debian/i.test(fields.Maintainer ?? '') : true);
  const ended = os.VERSION_ID ? securitySupportEntry(`security-support-ended.deb${os.VERSION_ID.split('.')[0]}`, source) : undefined;
  const limited = securitySupportEntry('security-support-limited', source);
  return {
    package: NODE_PACKAGE,
    ...(fields?.Version ? { version: fields.Version } : {}),
    ...(os.PRETTY_NAME ? { os: os.PRETTY_NAME } : {}),
    fromDistribution,
    ...(fromDistribution && ended ? { supportEnded: { date: ended[2] ?? '', details: ended.slice(3).join(' ') } } : {}),
    ...(fromDistribution && limited ? { supportLimited: limited.slice(1).join(' ') } : {}),
  };
}

/** How `--version` says it: the package, and whose security support applies. */
export function systemNodeText(p: SystemNodePackage): string {
  const what = `package ${p.package}${p.version ? ` ${p.version}` : ''}`;
  if (!p.fromDistribution) return what;
  const who = p.os ?? 'the distribution';
  if (p.supportEnded) return `${who} ${what}; its security support ended ${p.supportEnded.date}${p.supportEnded.details ? ` (${p.supportEnded.details})` : ''}`;
  if (p.supportLimited) return `${who} ${what}; security support from ${who}, limited (${p.supportLimited})`;
  return `${who} ${what}; security support from ${who}, not upstream's end of life`;
}
