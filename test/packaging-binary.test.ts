import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from './helpers/targets';
import { addonPath, binaryPath, ensureBinaries, REPO, neededVersions, runBinary, spawnBinary, versionAtMost, type BinaryArch } from './helpers/packaging';
import { describeAgentUnderQemu } from './helpers/qemu-agent';
import { until } from './helpers/stack';

/**
 * The single executables for the Pi, run here under qemu-user: what a Pi would run, byte for byte.
 * `make` rebuilds them first when a source changed (about 10 s per architecture). armv7's embeds an
 * end-of-life Node and is built on request only (ARMV7_EXECUTABLE=1, which the helper passes).
 */
const ARCHES: BinaryArch[] = ['arm64', 'armv7', 'x64'];
const EXPECT = {
  arm64: { machine: 'AArch64', klass: 'ELF64', interpreter: '/lib/ld-linux-aarch64.so.1', node: /^v24\./, arch: 'arm64', glibcBase: 'GLIBC_2.17', runtime: 'embedded; end of life 2028-04-30' },
  armv7: { machine: 'ARM', klass: 'ELF32', interpreter: '/lib/ld-linux-armhf.so.3', node: /^v20\./, arch: 'arm', glibcBase: 'GLIBC_2.4', runtime: `embedded, released 2024-01-09, ${daysSince('2024-01-09')} days old; end of life since 2026-04-30, no security fixes` },
  x64: { machine: 'Advanced Micro Devices X86-64', klass: 'ELF64', interpreter: '/lib64/ld-linux-x86-64.so.2', node: /^v24\./, arch: 'x64', glibcBase: 'GLIBC_2.2.5', runtime: 'embedded; end of life 2028-04-30' },
} as const;

function daysSince(date: string): number {
  return Math.floor((Date.now() - Date.parse(`${date}T00:00:00Z`)) / 86_400_000);
}
/** Pi OS bullseye: glibc 2.31 and GCC 10's libstdc++; the addon must ask for no more than Node itself (glibc 2.28). */
const MAX_GLIBC = '2.28';
const MAX_GLIBCXX = '3.4.28';

const tmp = mkdtempSync(join(tmpdir(), 'devstreams-binary-'));

beforeAll(async () => {
  await ensureBinaries(ARCHES);
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.each(ARCHES)('the %s executable', (arch) => {
  const want = EXPECT[arch];

  it('is an ELF executable for its architecture with the glibc dynamic loader', () => {
    const header = execFileSync('readelf', ['-h', binaryPath(arch)], { encoding: 'utf8' });
    expect(header).toMatch(new RegExp(`Class:\\s+${want.klass}`));
    expect(header).toMatch(new RegExp(`Machine:\\s+${want.machine}\\n`));
    expect(header).toMatch(/Type:\s+EXEC|Type:\s+DYN/);
    if (arch === 'armv7') expect(header).toMatch(/hard-float ABI/);
    const program = execFileSync('readelf', ['-lW', binaryPath(arch)], { encoding: 'utf8' });
    expect(program).toContain(`[Requesting program interpreter: ${want.interpreter}]`);
  });

  it("carries node-pty's addon, built for glibc 2.28 and newer", () => {
    const addon = addonPath(arch);
    expect(execFileSync('readelf', ['-h', addon], { encoding: 'utf8' })).toMatch(new RegExp(`Machine:\\s+${want.machine}\\n`));
    const versions = neededVersions(addon);
    const glibc = versions.filter((v) => v.startsWith('GLIBC_'));
    expect(glibc.length).toBeGreaterThan(0);
    expect(glibc.filter((v) => !versionAtMost(v, MAX_GLIBC))).toEqual([]);
    expect(versions.filter((v) => v.startsWith('GLIBCXX_') && !versionAtMost(v, MAX_GLIBCXX))).toEqual([]);
    // forkpty/openpty are pinned to the base version and found in libutil.so.1 on glibc < 2.34.
    const symbols = execFileSync('readelf', ['-W', '--dyn-syms', addon], { encoding: 'utf8' });
    expect(symbols).toMatch(new RegExp(`forkpty@${want.glibcBase}\\b`));
    expect(symbols).toMatch(new RegExp(`openpty@${want.glibcBase}\\b`));
    expect(execFileSync('readelf', ['-d', addon], { encoding: 'utf8' })).toContain('Shared library: [libutil.so.1]');
    // The very bytes travel inside the executable (base64 in the bundle in the SEA blob).
    const b64 = Buffer.from(readFileSync(addon).toString('base64'));
    expect(readFileSync(binaryPath(arch)).indexOf(b64)).toBeGreaterThan(0);
  });

  it('carries the malloc_trim addon (agent/malloc-trim.ts), asking glibc for its base version only', () => {
    const addon = addonPath(arch, 'malloc-trim');
    expect(execFileSync('readelf', ['-h', addon], { encoding: 'utf8' })).toMatch(new RegExp(`Machine:\\s+${want.machine}\\n`));
    expect(neededVersions(addon).filter((v) => v.startsWith('GLIBC'))).toEqual([want.glibcBase]);
    expect(execFileSync('readelf', ['-W', '--dyn-syms', addon], { encoding: 'utf8' })).toMatch(new RegExp(`malloc_trim@${want.glibcBase}\\b`));
    const b64 = Buffer.from(readFileSync(addon).toString('base64'));
    expect(readFileSync(binaryPath(arch)).indexOf(b64)).toBeGreaterThan(0);
  });

  it('prints version, commit, Node version and architecture', () => {
    const r = runBinary(arch, ['--version']);
    expect(r.status).toBe(0);
    const m = r.stdout.match(/^devstreams (\S+) \(commit (\S+)\) node (v[\d.]+) linux-(\w+) \((.*)\)\n$/);
    expect(m, r.stdout + r.stderr).not.toBeNull();
    expect(m![1]).toBe(JSON.parse(readFileSync(join(__dirname, '../package.json'), 'utf8')).version);
    expect(m![2]).not.toBe('dev');
    expect(m![3]).toMatch(want.node);
    expect(m![4]).toBe(want.arch);
    // The runtime's age, stated: armv7's Node 20 is past its end of life.
    expect(m![5]).toBe(want.runtime);
  });

  it('checks a config: ok, or exit 78 with every problem at file:line:col', () => {
    const good = join(tmp, `good-${arch}.yaml`);
    writeFileSync(good, `hub:\n  connection_string: "HostName=hub.example;DeviceId=pi;SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}"\nservices:\n  ssh:\n    port: 22\n`);
    const ok = runBinary(arch, ['check-config', good]);
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain(`${good}: ok (1 services)`);

    const bad = join(tmp, `bad-${arch}.yaml`);
    writeFileSync(bad, 'hub:\n  connection_string: "HostName=x"\nservices:\n  ssh:\n    port: 99999\n  web:\n    prot: 80\n');
    const r = runBinary(arch, ['check-config', bad]);
    expect(r.status).toBe(78);
    expect(r.stderr).toMatch(new RegExp(`${bad}:5:11: .*port`));
    expect(r.stderr.trim().split('\n').length).toBeGreaterThanOrEqual(2);
  });

  it("its agent leaves V8's TurboFan out on Node 24 (agent/v8-tiering.ts), keeps it on Node 20 or when asked", async () => {
    const config = join(tmp, `tiering-${arch}.yaml`);
    writeFileSync(config, `hub:\n  connection_string: "HostName=hub.example;DeviceId=pi;SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}"\nservices:\n  ssh:\n    port: 22\n`);
    const leftOut = want.node.test('v24.0.0');
    for (const [env, turbofan] of [[{}, !leftOut], [{ DEVSTREAMS_AGENT_TURBOFAN: '1' }, true]] as const) {
      // The agent says what it decided at debug level before it dials the hub (which does not exist).
      const agent = spawnBinary(arch, ['agent', '-c', config], { DEVSTREAMS_LOG_LEVEL: 'debug', ...env });
      try {
        const said = (): string | undefined => agent.lines.find((l) => l.includes('V8 optimizing compilers'));
        await until(() => said() !== undefined, `the ${arch} agent's tiering line`, 60_000);
        expect(JSON.parse(said()!)).toMatchObject({ turbofan, node: expect.stringMatching(want.node) });
      } finally {
        await agent.stop();
      }
    }
  }, 150_000);
});

describe.each(['arm64', 'armv7'] as const)('the %s executable as the agent, against the x64 hub', (arch) => {
  describeAgentUnderQemu(arch, join(tmp, `native-${arch}`), (args, env) => spawnBinary(arch, args, env));
});

describe('the armv7 executable, built on request only (its Node is end of life)', () => {
  it('is not among what `make binary` and `make deb` build; the armhf bundle is', () => {
    const plan = execFileSync('make', ['-n', '-B', '--no-print-directory', 'binary', 'deb'], { cwd: REPO, encoding: 'utf8' });
    expect(plan).toMatch(/build\.mjs arm64$/m);
    expect(plan).toMatch(/build\.mjs x64$/m);
    expect(plan).toMatch(/build\.mjs armv7-bundle$/m);
    expect(plan).not.toMatch(/build\.mjs armv7$/m);
  });

  it('the build refuses it unless asked, naming the runtime and its age', () => {
    const env = { ...process.env };
    delete env.DEVSTREAMS_EOL_EXECUTABLE;
    const r = spawnSync(process.execPath, ['scripts/binary/build.mjs', 'armv7'], { cwd: REPO, env, encoding: 'utf8' });
    expect(r.status).toBe(64);
    expect(r.stderr).toContain(`embed node v20.11.0 (released 2024-01-09, ${daysSince('2024-01-09')} days old), end of life since 2026-04-30`);
    expect(r.stderr).toContain('make binary ARMV7_EXECUTABLE=1');
  });

  it("its agent warns at start that its Node is end of life, how old it is, and what to use instead", async () => {
    const config = join(tmp, 'agent-eol.yaml');
    writeFileSync(config, `hub:\n  connection_string: "HostName=127.0.0.1:1;DeviceId=pi-eol;SharedAccessKey=${Buffer.alloc(32, 2).toString('base64')}"\nservices:\n  echo:\n    port: 7\n`);
    const agent = spawnBinary('armv7', ['agent', '--config', config]);
    try {
      await until(() => agent.lines.some((l) => l.includes('end of life since')), 'the warning', 60_000);
      const warning = JSON.parse(agent.lines.find((l) => l.includes('end of life since'))!) as Record<string, unknown>;
      expect(warning).toMatchObject({ level: 40, node: 'v20.11.0', released: '2024-01-09', end_of_life: '2026-04-30' });
      expect(warning.msg).toContain(`embeds node v20.11.0 (released 2024-01-09, ${daysSince('2024-01-09')} days old), end of life since 2026-04-30`);
      expect(warning.msg).toContain("the system's maintained nodejs");
    } finally {
      await agent.stop();
    }
  });
});

describe('reproducibility', () => {
  it('builds the same arm64 bytes twice from the same tree and commit', async () => {
    // A frozen copy of the tree (others may be editing this one), sharing node_modules and its cache.
    const copy = join(tmp, 'tree');
    const skip = new Set(['node_modules', 'dist', '.git', '.cache']);
    cpSync(REPO, copy, { recursive: true, filter: (src) => !skip.has(relative(REPO, src).split('/')[0]!) });
    symlinkSync(join(REPO, 'node_modules'), join(copy, 'node_modules'));
    const build = async () => {
      await promisify(execFile)(process.execPath, ['scripts/binary/build.mjs', 'arm64'], { cwd: copy, env: { ...process.env, DEVSTREAMS_COMMIT: 'repro-test' } });
      const bytes = readFileSync(join(copy, 'dist/devstreams-linux-arm64'));
      rmSync(join(copy, 'dist'), { recursive: true, force: true }); // the second build starts from nothing too
      return sha256(bytes);
    };
    const first = await build();
    expect(await build()).toBe(first);
  }, 300_000);
});
