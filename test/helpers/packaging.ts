import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { until } from './stack';

export const REPO = resolve(__dirname, '../..');
export type BinaryArch = 'arm64' | 'armv7' | 'x64';

export const QEMU: Record<BinaryArch, string[]> = {
  arm64: ['qemu-aarch64', '-L', '/usr/aarch64-linux-gnu'],
  armv7: ['qemu-arm', '-L', '/usr/arm-linux-gnueabihf'],
  x64: [],
};

/** qemu-user for an ARM architecture with `root` as its root (-L) instead of the cross toolchain's. */
export function qemuFor(arch: BinaryArch, root?: string): string[] {
  return root && QEMU[arch].length ? [QEMU[arch][0]!, '-L', root] : QEMU[arch];
}

/** The Debian releases whose armhf nodejs the armhf .deb is tested on (`make system-deps` fetches each). */
export const DEBIAN_SUITES = ['bookworm', 'trixie'] as const;
export type DebianSuite = (typeof DEBIAN_SUITES)[number];

/**
 * A Debian armhf root with Debian's own nodejs, as `make system-deps` fetches it
 * (scripts/debian-sysroot.sh); DEVSTREAMS_DEBIAN_SYSROOT_DIR points elsewhere than .cache/debian-sysroot.
 */
export function debianArmhfRoot(suite: DebianSuite): string {
  return resolve(process.env.DEVSTREAMS_DEBIAN_SYSROOT_DIR || resolve(REPO, '.cache/debian-sysroot'), `${suite}-armhf`, 'root');
}

export function binaryPath(arch: BinaryArch): string {
  return resolve(REPO, `dist/devstreams-linux-${arch}`);
}

export function addonPath(arch: BinaryArch, name: 'pty' | 'malloc-trim' = 'pty'): string {
  return resolve(REPO, `dist/native/${name}-linux-${arch}.node`);
}

const LOCK = resolve(REPO, 'dist/.binary-build.lock');
const LOCK_STALE_MS = 15 * 60_000;

/**
 * Test files run in parallel processes, and other people's test runs may share this tree: a lock
 * directory keeps two of them from building into the same work directory (or replacing an
 * executable another is packaging) at once.
 */
export async function withBuildLock<T>(fn: () => Promise<T>): Promise<T> {
  mkdirSync(resolve(REPO, 'dist'), { recursive: true });
  await until(
    () => {
      try {
        mkdirSync(LOCK);
        return true;
      } catch {
        try {
          if (Date.now() - statSync(LOCK).mtimeMs > LOCK_STALE_MS) rmSync(LOCK, { recursive: true, force: true });
        } catch {
          // gone already
        }
        return false;
      }
    },
    'the binary build lock',
    LOCK_STALE_MS,
  );
  try {
    return await fn();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

/**
 * `make` for the executables: a no-op when nothing changed, about 10 s per target otherwise. Call
 * inside withBuildLock. Asking for armv7 asks for it explicitly (ARMV7_EXECUTABLE=1): its Node is end
 * of life, so `make` builds it only on request.
 */
export async function makeBinaries(arches: BinaryArch[]): Promise<void> {
  const request = arches.includes('armv7') ? ['ARMV7_EXECUTABLE=1'] : [];
  await promisify(execFile)('make', ['--no-print-directory', ...request, ...arches.map((a) => `dist/devstreams-linux-${a}`)], {
    cwd: REPO,
    maxBuffer: 64 << 20,
    env: { ...process.env, DEVSTREAMS_FOOTPRINT_FILE: join(REPO, 'dist', 'footprint.json') },
  });
}

export function ensureBinaries(arches: BinaryArch[]): Promise<void> {
  return withBuildLock(() => makeBinaries(arches));
}

/** Runs an executable of any of our architectures to completion (under qemu-user for ARM). */
export function runBinary(arch: BinaryArch, args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const [cmd, ...pre] = [...QEMU[arch], binaryPath(arch)];
  try {
    const stdout = execFileSync(cmd!, [...pre, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { status: 0, stdout, stderr: '' };
  } catch (err) {
    const e = err as { status: number | null; stdout: string; stderr: string };
    return { status: e.status, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

export interface SpawnedProgram {
  proc: ChildProcess;
  lines: string[];
  stop: () => Promise<void>;
}

/** Starts an executable as a long-running process; lines of stdout+stderr are collected. */
export function spawnBinary(arch: BinaryArch, args: string[], env: NodeJS.ProcessEnv = {}): SpawnedProgram {
  return spawnOn(arch, [binaryPath(arch)], args, env);
}

/**
 * Starts a program for `arch` (`program`: the file and its leading arguments, e.g. node and a bundle),
 * under qemu-user for ARM, with Debian's cross root as its root or `root` (a Debian root, e.g. the one
 * scripts/debian-sysroot.sh makes: its libraries, and its /etc and /var/lib/dpkg where they exist).
 */
export function spawnOn(arch: BinaryArch, program: string[], args: string[], env: NodeJS.ProcessEnv = {}, root?: string): SpawnedProgram {
  const [cmd, ...pre] = [...qemuFor(arch, root), ...program];
  const proc = spawn(cmd!, [...pre, ...args], { env: { ...process.env, DEVSTREAMS_LOG_FORMAT: 'json', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let partial = '';
  const onData = (chunk: Buffer): void => {
    const parts = (partial + chunk.toString()).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    if (process.env.TEST_LOG) for (const l of parts) process.stderr.write(`[${arch}] ${l}\n`);
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    proc,
    lines,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The dynamic symbol versions an ELF file needs, by readelf (binutils reads every architecture). */
export function neededVersions(file: string): string[] {
  const out = execFileSync('readelf', ['-W', '--version-info', file], { encoding: 'utf8' });
  return [...new Set([...out.matchAll(/Name: ((?:GLIBC|GLIBCXX|CXXABI|GCC)_[\d.]+)/g)].map((m) => m[1]!))];
}

export function versionOf(tag: string): number[] {
  return tag.replace(/^[A-Z]+_/, '').split('.').map(Number);
}

export function versionAtMost(tag: string, max: string): boolean {
  const a = versionOf(tag);
  const b = max.split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d < 0;
  }
  return true;
}
