import { readdir, readFile, statfs } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';

/**
 * The device figures in a health message, each read without spawning a process and without a
 * synchronous call: Linux files read asynchronously and `statfs` (libuv's thread pool), never the
 * event loop. systeminformation stays for memory (`/proc/meminfo`, read asynchronously); its CPU load,
 * temperature, disk and network readers run `cat`/`df`/`execSync` on Linux and blocked the loop
 * 6-22 ms per reading (issue 16). test/telemetry-readings.test.ts holds every reader to 2 ms.
 */

const THERMAL_DIR = '/sys/class/thermal';
const NET_DIR = '/sys/class/net';
const MOUNTS_FILE = '/proc/mounts';

/** CPU busy share since the previous call (since boot on the first), from the kernel's per-CPU times. */
export class CpuLoad {
  private last = totals();

  readPct(): number | null {
    const now = totals();
    const busy = now.busy - this.last.busy;
    const all = now.all - this.last.all;
    this.last = now;
    // Less than a tick passed (two readings at once): report the share since boot instead of 0/0.
    if (all <= 0) return now.all > 0 ? (now.busy / now.all) * 100 : null;
    return (busy / all) * 100;
  }
}

function totals(): { busy: number; all: number } {
  let busy = 0;
  let all = 0;
  for (const c of cpus()) {
    const t = c.times;
    busy += t.user + t.nice + t.sys + t.irq;
    all += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  return { busy, all };
}

/** The CPU's temperature in °C: the thermal zone whose type names the CPU (`cpu-thermal` on a Pi, `x86_pkg_temp`), else the first. */
export async function cpuTemperatureC(dir = THERMAL_DIR): Promise<number | null> {
  const zones = (await readdir(dir).catch(() => [] as string[])).filter((z) => z.startsWith('thermal_zone')).sort();
  const read = await Promise.all(
    zones.map(async (z) => {
      const [type, temp] = await Promise.all([readFile(join(dir, z, 'type'), 'utf8'), readFile(join(dir, z, 'temp'), 'utf8')].map((p) => p.catch(() => '')));
      return { type: type!.trim().toLowerCase(), milli: Number.parseInt(temp!.trim(), 10) };
    }),
  );
  const usable = read.filter((z) => Number.isFinite(z.milli));
  const cpu = usable.find((z) => z.type.includes('cpu') || z.type === 'x86_pkg_temp') ?? usable[0];
  return cpu ? cpu.milli / 1000 : null;
}

export interface DiskReading {
  mount: string;
  size_bytes: number;
  used_pct: number;
}

/**
 * Filesystems on block devices (`/dev/...`, so never a network mount that could hang), each device
 * once, `/` first; used share as `df` counts it (used / (used + available to users)).
 */
export async function diskUsage(mountsFile = MOUNTS_FILE): Promise<DiskReading[]> {
  const seen = new Set<string>();
  const mounts: string[] = [];
  for (const line of (await readFile(mountsFile, 'utf8')).split('\n')) {
    const [source, mount, type] = line.split(' ');
    if (!source?.startsWith('/dev/') || !mount || type === 'squashfs' || seen.has(source)) continue;
    seen.add(source);
    mounts.push(mount.replace(/\\040/g, ' '));
  }
  mounts.sort((a, b) => (a === '/' ? -1 : b === '/' ? 1 : 0));
  const out: DiskReading[] = [];
  for (const mount of mounts) {
    const s = await statfs(mount).catch(() => null);
    if (!s || s.blocks === 0) continue;
    const used = (s.blocks - s.bfree) * s.bsize;
    const usable = used + s.bavail * s.bsize;
    out.push({ mount, size_bytes: s.blocks * s.bsize, used_pct: usable > 0 ? (used / usable) * 100 : 0 });
  }
  return out;
}

export interface NetReading {
  iface: string;
  rx_bytes: number;
  tx_bytes: number;
}

/** Byte counters of every interface but loopback, from sysfs. */
export async function networkCounters(dir = NET_DIR): Promise<NetReading[]> {
  const ifaces = (await readdir(dir)).filter((i) => i !== 'lo').sort();
  const read = await Promise.all(
    ifaces.map(async (iface) => {
      const [rx, tx] = await Promise.all(['rx_bytes', 'tx_bytes'].map((f) => readFile(join(dir, iface, 'statistics', f), 'utf8').catch(() => '')));
      return { iface, rx_bytes: Number.parseInt(rx!, 10), tx_bytes: Number.parseInt(tx!, 10) };
    }),
  );
  return read.filter((n) => Number.isFinite(n.rx_bytes) && Number.isFinite(n.tx_bytes));
}
