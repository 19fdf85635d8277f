import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

/** Clock ticks per second for /proc/<pid>/stat CPU times. */
const CLK_TCK = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Resident set size of a live process, in bytes (VmRSS): the tests' reader. */
export { rssBytes } from '../test/helpers/hostile';

/**
 * CPU seconds (user + system) a process used; with `children`, also the children it has waited for
 * (socat's `fork` mode does the work in children that it reaps).
 */
export function cpuSeconds(pid: number, opts: { children?: boolean } = {}): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may itself hold spaces: state is field 3, utime 14.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  const ticks = f[11]! + f[12]! + (opts.children ? f[13]! + f[14]! : 0);
  return ticks / CLK_TCK;
}

/** Pids of a process's live children. */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export { freePort } from '../test/helpers/free-port';

/** A child process the benchmark started: stdout kept as lines, stderr into a log file. */
export class Proc {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  private exited = false;
  private readonly exitPromise: Promise<number | null>;

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    opts: { logFile: string; env?: NodeJS.ProcessEnv },
  ) {
    const logFd = openSync(opts.logFile, 'a');
    this.child = spawn(command, args, { stdio: ['ignore', 'pipe', logFd], env: { ...process.env, ...opts.env } });
    closeSync(logFd);
    let partial = '';
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (s: string) => {
      const parts = (partial + s).split('\n');
      partial = parts.pop() ?? '';
      this.lines.push(...parts);
    });
    this.exitPromise = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        this.exited = true;
        resolve(code);
      });
      this.child.once('error', () => {
        this.exited = true;
        resolve(null);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return !this.exited;
  }

  /** The first stdout line matching `re` (waits for it; fails if the process exits first). */
  async line(re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    let match: RegExpMatchArray | null = null;
    await waitFor(
      () => {
        for (const l of this.lines) if ((match = re.exec(l))) return true;
        if (this.exited) throw new Error(`${this.name} exited before printing ${re}`);
        return false;
      },
      `${this.name} to print ${re}`,
      timeoutMs,
    );
    return match!;
  }

  exit(): Promise<number | null> {
    return this.exitPromise;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.exited) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exitPromise;
    clearTimeout(timer);
  }
}

/** Runs a command to completion and returns its stdout (throws with stderr on failure). */
export function run(command: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      if (code === 0) resolve(stdout);
      else reject(new Error(`${command} ${args.join(' ')} failed (${signal ?? code}): ${Buffer.concat(err).toString('utf8').slice(0, 500) || stdout.slice(0, 500)}`));
    });
  });
}
