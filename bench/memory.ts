import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Socket } from 'node:net';
import { closeAll, openHeld, payload } from './clients';
import { Proc, sleep, waitFor } from './procs';
import type { CliStack } from './stack';

/**
 * The agent's memory as shipped (issue 16): each variant (the bundle on this node, the single
 * executables, an ARM one under qemu) runs as its own device on the bench hub. Idle 60 s after
 * connecting; loaded with 100 and 500 byte-exact streams held open; idle again 60 s after they all
 * closed. RSS and its anonymous part from /proc/<pid>/status.
 */

export interface AgentVariant {
  name: string;
  command: string;
  args: string[];
  /** A file just built, evicted from the page cache before it runs (its RSS would count cached pages differently). */
  file?: string;
  /** Shown beside the figures (e.g. "under qemu-aarch64: qemu's own memory included"). */
  note?: string;
  /** Environment the agent runs with (the unit's Environment= settings, or a lever being measured). */
  env?: Record<string, string>;
}

export interface MemSample {
  rss: number;
  anon: number;
}

export interface AgentMemoryResult {
  name: string;
  note?: string;
  version?: string;
  pageCache: string;
  idle: MemSample;
  at100: MemSample;
  at500: MemSample;
  afterClose: MemSample;
  /** Bytes of RSS per open stream, (at N − idle) ÷ N. */
  perStream100: number;
  perStream500: number;
  failedStreams: number;
  error?: string;
}

export interface AgentMemoryOptions {
  idleSeconds: number;
  afterCloseSeconds: number;
  streams: [number, number];
  payloadBytes: number;
}

export function memSample(pid: number): MemSample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon') };
}

/**
 * Drops a file's pages from the page cache (written back first), so the process maps it as it would
 * after a reboot, not as the build left it in memory. Says what happened.
 */
export function evictFromPageCache(file: string): string {
  try {
    execFileSync('sync', [file]);
    execFileSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
    const cached = execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' }).trim();
    return `evicted from the page cache before the run (${cached} bytes left cached)`;
  } catch (err) {
    return `not evicted (${(err as Error).message.split('\n')[0]})`;
  }
}

/** A copy of an executable at `to`, runnable. */
function ownCopy(file: string, to: string): string {
  copyFileSync(file, to);
  chmodSync(to, 0o755);
  return to;
}

/** Every variant idles together (one wait), then each is loaded in turn, then each idles again. */
export async function measureAgentMemory(stack: CliStack, variants: AgentVariant[], opts: AgentMemoryOptions, say: (msg: string) => void): Promise<AgentMemoryResult[]> {
  const started: Array<{ v: AgentVariant; proc: Proc; device: string; pageCache: string; version?: string }> = [];
  const results: AgentMemoryResult[] = [];
  const block = payload(opts.payloadBytes);
  try {
    for (const [i, v] of variants.entries()) {
      if (v.file && !existsSync(v.file)) {
        say(`memory: ${v.name} skipped: ${v.file} is not built (make binary)`);
        continue;
      }
      // Each executable runs from a copy of its own: variants of one file would share its pages, and
      // the later ones would start with the first one's pages mapped and cached.
      const own = v.file ? ownCopy(v.file, join(stack.dir, `agent-${i}-${basename(v.file)}`)) : undefined;
      const pageCache = own ? evictFromPageCache(own) : 'n/a (bundle)';
      const device = `bench-mem-${i}`;
      const swap = (a: string): string => (a === v.file ? own! : a);
      const proc = await stack.startAgent(swap(v.command), device, v.args.map(swap), v.env ?? {});
      started.push({ v, proc, device, pageCache });
    }
    for (const s of started) {
      await waitFor(() => readFileSync(join(stack.dir, `agent-${s.device}.log`), 'utf8').includes('listening for stream requests'), `${s.v.name} to connect`, 180_000, 100);
    }
    say(`memory: ${started.length} agents connected; idle ${opts.idleSeconds} s`);
    await sleep(opts.idleSeconds * 1000);
    const idle = started.map((s) => memSample(s.proc.pid));
    const closedAt: number[] = [];
    for (const [i, s] of started.entries()) {
      const c = await stack.connect('echo', s.device);
      const held: Socket[] = [];
      let failed = 0;
      const open = async (n: number): Promise<void> => {
        const r = await openHeld(c.port, n, block, held);
        failed += r.failed;
        if (r.errors[0]) say(`memory: ${s.v.name}: ${r.failed} streams failed, first: ${r.errors[0]}`);
      };
      await open(opts.streams[0]);
      await sleep(1000);
      const at100 = memSample(s.proc.pid);
      await open(opts.streams[1] - opts.streams[0]);
      await sleep(1000);
      const at500 = memSample(s.proc.pid);
      await closeAll(held);
      closedAt.push(Date.now());
      await c.proc.stop();
      const base = idle[i]!;
      results.push({
        name: s.v.name,
        ...(s.v.note ? { note: s.v.note } : {}),
        pageCache: s.pageCache,
        idle: base,
        at100,
        at500,
        afterClose: { rss: NaN, anon: NaN },
        perStream100: (at100.rss - base.rss) / opts.streams[0],
        perStream500: (at500.rss - base.rss) / opts.streams[1],
        failedStreams: failed,
      });
      say(`memory: ${s.v.name}: idle ${mbText(base)}, ${opts.streams[0]} streams ${mbText(at100)}, ${opts.streams[1]} ${mbText(at500)} (${failed} failed)`);
    }
    for (const [i, s] of started.entries()) {
      await sleep(Math.max(0, closedAt[i]! + opts.afterCloseSeconds * 1000 - Date.now()));
      results[i]!.afterClose = memSample(s.proc.pid);
      say(`memory: ${s.v.name}: ${opts.afterCloseSeconds} s after the streams closed ${mbText(results[i]!.afterClose)}`);
    }
    return results;
  } finally {
    for (const s of started) await s.proc.stop();
  }
}

const mbText = (m: MemSample): string => `${(m.rss / 1e6).toFixed(1)} MB RSS (${(m.anon / 1e6).toFixed(1)} anon)`;
