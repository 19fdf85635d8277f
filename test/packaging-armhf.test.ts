import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEBIAN_SUITES, debianArmhfRoot, REPO, qemuFor, spawnOn, withBuildLock, type DebianSuite } from './helpers/packaging';
import { describeAgentUnderQemu } from './helpers/qemu-agent';
import { until } from './helpers/stack';

/**
 * The armhf .deb carries no Node: it runs the armv7 bundle on the system's nodejs, because no
 * maintained armv7 Node can be embedded (docs/packaging.md). Here the package is built (gzip),
 * unpacked, and its program run under qemu-arm on Debian's own armhf nodejs, bookworm's and trixie's:
 * the binary, libnode and every library they load come from Debian's archive (`make system-deps`
 * unpacks them, scripts/debian-sysroot.sh), and qemu takes that root as the program's /.
 */
const VERSION = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version as string;
const run = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), 'devstreams-armhf-'));
const deb = join(tmp, `devstreams_${VERSION}_armhf.deb`);
const root = join(tmp, 'root');
const BUNDLE = join(root, 'usr/lib/devstreams/devstreams.cjs');
const sha256 = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

/** What each Debian release's armhf nodejs is (docs/packaging.md has the facts). */
const DEBIAN = {
  bookworm: { os: 'Debian GNU/Linux 12 (bookworm)', node: /^v18\.20\.\d+$/, version: /^18\.20\.\d+\+dfsg-\d+~deb12u\d+$/, libnode: 'libnode108', soname: 'libnode.so.108' },
  trixie: { os: 'Debian GNU/Linux 13 (trixie)', node: /^v20\.19\.\d+$/, version: /^20\.19\.\d+\+dfsg-\d+\+deb13u\d+$/, libnode: 'libnode115', soname: 'libnode.so.115' },
} as const satisfies Record<DebianSuite, unknown>;

/** The package's program on a Debian root's node (run under qemu-arm with that root as /). */
function onDebianNode(debianRoot: string): string[] {
  return [join(debianRoot, 'usr/bin/node'), BUNDLE];
}

/** The package's program on a Debian root's node, to its end; its stdout. */
function runDebianNode(debianRoot: string, args: string[]): string {
  const [cmd, ...pre] = [...qemuFor('armv7', debianRoot), ...onDebianNode(debianRoot)];
  return execFileSync(cmd!, [...pre, ...args], { encoding: 'utf8' });
}

/** A package's fields as a root's dpkg database records them (the .debs' own control files). */
function dpkgStatus(debianRoot: string, pkg: string): Record<string, string> {
  const status = readFileSync(join(debianRoot, 'var/lib/dpkg/status'), 'utf8');
  const para = status.split('\n\n').find((p) => p.startsWith(`Package: ${pkg}\n`));
  if (!para) throw new Error(`${pkg} is not in ${debianRoot}'s dpkg status`);
  return Object.fromEntries([...para.matchAll(/^([\w-]+): (.*)$/gm)].map((m) => [m[1]!, m[2]!]));
}

beforeAll(async () => {
  for (const suite of DEBIAN_SUITES) {
    const node = join(debianArmhfRoot(suite), 'usr/bin/node');
    if (!existsSync(node)) throw new Error(`${node} is missing: run "make system-deps" (scripts/debian-sysroot.sh fetches Debian's armhf nodejs)`);
  }
  await withBuildLock(async () => {
    // Sizes into dist/, not the benchmarks' tracked bench/results/footprint.json.
    const env = { ...process.env, DEVSTREAMS_FOOTPRINT_FILE: join(REPO, 'dist', 'footprint.json') };
    await run('make', ['--no-print-directory', 'dist/devstreams-linux-armv7.cjs'], { cwd: REPO, maxBuffer: 64 << 20, env });
    await run('bash', ['packaging/build-deb.sh', 'armhf'], { cwd: REPO, env: { ...process.env, DEVSTREAMS_DEB_OUT: tmp, DEVSTREAMS_DEB_COMPRESSION: 'gzip' } });
  });
  mkdirSync(root);
  execFileSync('dpkg-deb', ['-x', deb, root]);
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('the armhf Debian package', () => {
  it("depends on the system's nodejs and carries no Node of its own", () => {
    expect(execFileSync('dpkg-deb', ['-f', deb, 'Depends'], { encoding: 'utf8' })).toMatch(/(^|, )nodejs \(>= 18\.20\)(,|$)/m);
    const launcher = readFileSync(join(root, 'usr/bin/devstreams'), 'utf8');
    expect(statSync(join(root, 'usr/bin/devstreams')).mode & 0o777).toBe(0o755);
    expect(launcher).toMatch(/^#!\/bin\/sh\n/);
    expect(launcher).toMatch(/^exec \/usr\/bin\/node \/usr\/lib\/devstreams\/devstreams\.cjs "\$@"$/m);
    expect(sha256(BUNDLE)).toBe(sha256(join(REPO, 'dist/devstreams-linux-armv7.cjs')));
    // No ELF file anywhere in the package (node-pty's addon travels inside the bundle).
    const files = execFileSync('find', [root, '-type', 'f'], { encoding: 'utf8' }).trim().split('\n');
    for (const f of files) expect(readFileSync(f).subarray(0, 4).toString('latin1'), f).not.toBe('\x7fELF');
  });
});

describe.each(DEBIAN_SUITES)("the armhf package on Debian %s's armhf nodejs under qemu-arm", (suite) => {
  const debianRoot = debianArmhfRoot(suite);
  const want = DEBIAN[suite];

  it("runs on Debian's own nodejs: Debian's build, linked to Debian's libnode", () => {
    const nodejs = dpkgStatus(debianRoot, 'nodejs');
    expect(nodejs).toMatchObject({ Architecture: 'armhf', Maintainer: expect.stringMatching(/^Debian Javascript Maintainers /) });
    expect(nodejs.Version).toMatch(want.version);
    expect(dpkgStatus(debianRoot, want.libnode).Version).toBe(nodejs.Version);
    const needed = execFileSync('readelf', ['-d', join(debianRoot, 'usr/bin/node')], { encoding: 'utf8' });
    expect(needed).toMatch(new RegExp(`\\(NEEDED\\)\\s+Shared library: \\[${want.soname.replace(/\./g, '\\.')}\\]`));
  });

  it("prints the runtime it runs on: Debian's nodejs, with Debian's security support (not upstream's end of life)", () => {
    const out = runDebianNode(debianRoot, ['--version']);
    const m = out.match(/^devstreams \S+ \(commit \S+\) node (v[\d.]+) linux-arm \((.*)\)\n$/);
    expect(m, out).not.toBeNull();
    expect(m![1]).toMatch(want.node);
    const pkg = `${want.os} package nodejs ${dpkgStatus(debianRoot, 'nodejs').Version}`;
    expect(m![2]).toBe(`${join(debianRoot, 'usr/bin/node')}: ${pkg}; security support from ${want.os}, not upstream's end of life`);
  });

  describe('as the agent, against the x64 hub', () => {
    describeAgentUnderQemu(`armhf-${suite}`, join(tmp, `native-${suite}`), (args, env) => spawnOn('armv7', onDebianNode(debianRoot), args, env, debianRoot), { idleTrim: true });
  });
});

describe("Debian's nodejs once Debian ends its security support", () => {
  // The same root (hard links) plus debian-security-support's list naming nodejs, as that package
  // would say once Debian drops it: --version and the agent's start warning say so.
  const ended = join(tmp, 'ended-root');
  const bookworm = debianArmhfRoot('bookworm');
  const LINE = 'nodejs 18.20.4+dfsg-1~deb12u3 2028-06-30 Debian 12 LTS ended';
  beforeAll(() => {
    execFileSync('cp', ['-al', bookworm, ended]);
    mkdirSync(join(ended, 'usr/share/debian-security-support'), { recursive: true });
    writeFileSync(join(ended, 'usr/share/debian-security-support/security-support-ended.deb12'), `# test\n${LINE}\n`);
  });

  it('--version says the support ended, and when', () => {
    expect(runDebianNode(ended, ['--version'])).toContain(
      `(${join(ended, 'usr/bin/node')}: Debian GNU/Linux 12 (bookworm) package nodejs ${dpkgStatus(bookworm, 'nodejs').Version}; its security support ended 2028-06-30 (Debian 12 LTS ended))`,
    );
  });

  it('the agent warns at start', async () => {
    const config = join(tmp, 'agent-ended.yaml');
    const key = Buffer.alloc(32, 1).toString('base64');
    writeFileSync(config, `hub:\n  connection_string: "HostName=127.0.0.1:1;DeviceId=pi-ended;SharedAccessKey=${key}"\nservices:\n  echo:\n    port: 7\n`);
    const agent = spawnOn('armv7', onDebianNode(ended), ['agent', '--config', config], {}, ended);
    try {
      await until(() => agent.lines.some((l) => l.includes('security support ended')), 'the warning', 60_000);
      const warning = JSON.parse(agent.lines.find((l) => l.includes('security support ended'))!) as Record<string, unknown>;
      expect(warning).toMatchObject({ level: 40, package: 'nodejs', support_ended: '2028-06-30' });
    } finally {
      await agent.stop();
    }
  });
});
