import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: plain ESM script without types
import { fetchTarball } from '../scripts/binary/npm-tarball.mjs';
// @ts-expect-error: plain ESM script without types
import { SYSTEM_NODE_STAND_IN } from '../scripts/binary/targets.mjs';
import { QEMU, REPO, spawnOn, withBuildLock } from './helpers/packaging';
import { describeAgentUnderQemu } from './helpers/qemu-agent';

/**
 * The armhf .deb carries no Node: it runs the armv7 bundle on the system's nodejs (Debian bookworm's
 * 18.20.4, kept by Debian security), because the newest armv7 Node we could embed (20.11.0) is end
 * of life. Here the package is built (gzip), unpacked, and its program run under qemu-arm on Node
 * 18.20.4's official armv7l build: the same upstream version as Debian's package, which cannot run
 * here (its shared libraries are not in this machine's armhf cross root).
 */
const VERSION = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version as string;
const run = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), 'devstreams-armhf-'));
const deb = join(tmp, `devstreams_${VERSION}_armhf.deb`);
const root = join(tmp, 'root');
const nodeDir = join(tmp, 'node');
const BUNDLE = join(root, 'usr/lib/devstreams/devstreams.cjs');
const sha256 = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
const node = (): string[] => [join(nodeDir, 'bin/node'), BUNDLE];

beforeAll(async () => {
  await withBuildLock(async () => {
    await run('make', ['--no-print-directory', 'dist/devstreams-linux-armv7.cjs'], { cwd: REPO, maxBuffer: 64 << 20 });
    await run('bash', ['packaging/build-deb.sh', 'armhf'], { cwd: REPO, env: { ...process.env, DEVSTREAMS_DEB_OUT: tmp, DEVSTREAMS_DEB_COMPRESSION: 'gzip' } });
  });
  mkdirSync(root);
  execFileSync('dpkg-deb', ['-x', deb, root]);
  mkdirSync(nodeDir);
  execFileSync('tar', ['-xzf', fetchTarball(SYSTEM_NODE_STAND_IN.armv7), '-C', nodeDir, '--strip-components=1', 'package/bin/node']);
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

  it('prints the runtime it runs on: the system node, by path', () => {
    const [cmd, ...pre] = [...QEMU.armv7, ...node()];
    const out = execFileSync(cmd!, [...pre, '--version'], { encoding: 'utf8' });
    expect(out).toBe(`${out.match(/^devstreams \S+ \(commit \S+\) /)![0]}node v18.20.4 linux-arm (${join(nodeDir, 'bin/node')})\n`);
  });
});

describe('the armhf package as the agent on Node 18.20.4 under qemu-arm, against the x64 hub', () => {
  describeAgentUnderQemu('armhf-node18', join(tmp, 'native'), (args, env) => spawnOn('armv7', node(), args, env));
});
