import { loadavg, uptime } from 'node:os';
// Only the memory reader (it reads /proc/meminfo asynchronously); the whole package loads ~40 modules.
import { mem } from 'systeminformation/lib/memory';
import { CpuLoad, cpuTemperatureC, diskUsage, networkCounters } from './health-readings';
import type { Logger } from '../core/log';
import { withinMs } from '../core/deadline';
import type { StatusSnapshot } from './status';

/**
 * Health telemetry: a small JSON document on IoT Hub's device-to-cloud topic every `telemetry.interval`
 * (and once after each connect), read without spawning processes or blocking the event loop
 * (./health-readings.ts). Any figure that cannot be read (no thermal sensor in a VM) is null; a
 * failed reading never stops the agent or the other figures.
 */
export const HEALTH_SCHEMA = 'devstreams.health/1';
/** One reading may not take longer than this (a slow disk or a busy thread pool). */
const READ_TIMEOUT_MS = 5_000;
const MAX_LIST_ITEMS = 4;

export interface Health {
  schema: typeof HEALTH_SCHEMA;
  device: string;
  version: string;
  at: string;
  uptime_s: number;
  agent_uptime_s: number;
  cpu: { load_pct: number | null; load_avg_1m: number; temp_c: number | null };
  memory: { total_bytes: number; available_bytes: number; used_pct: number } | null;
  disks: Array<{ mount: string; size_bytes: number; used_pct: number }> | null;
  network: Array<{ iface: string; rx_bytes: number; tx_bytes: number }> | null;
  agent: {
    connected: boolean;
    active_streams: number;
    streams_total: number;
    refused_total: number;
    bytes_to_target: number;
    bytes_from_target: number;
    reconnects: number;
    rss_bytes: number;
  };
}

async function read<T>(what: () => Promise<T>): Promise<T | null> {
  try {
    return (await withinMs(what(), READ_TIMEOUT_MS)) ?? null;
  } catch {
    return null;
  }
}

const round1 = (n: number): number => Math.round(n * 10) / 10;

const cpuLoad = new CpuLoad();

export async function readHealth(s: StatusSnapshot): Promise<Health> {
  const loadPct = cpuLoad.readPct();
  const [temp, memory, fs, net] = await Promise.all([read(() => cpuTemperatureC()), read(() => mem()), read(() => diskUsage()), read(() => networkCounters())]);
  return {
    schema: HEALTH_SCHEMA,
    device: s.device,
    version: s.version,
    at: new Date().toISOString(),
    uptime_s: Math.round(uptime()),
    agent_uptime_s: Math.round((Date.now() - Date.parse(s.started_at)) / 1000),
    cpu: {
      load_pct: loadPct !== null && Number.isFinite(loadPct) ? round1(loadPct) : null,
      load_avg_1m: round1(loadavg()[0] ?? 0),
      temp_c: temp !== null && Number.isFinite(temp) ? round1(temp) : null,
    },
    memory: memory ? { total_bytes: memory.total, available_bytes: memory.available, used_pct: round1(((memory.total - memory.available) / memory.total) * 100) } : null,
    disks: fs ? fs.slice(0, MAX_LIST_ITEMS).map((d) => ({ ...d, used_pct: round1(d.used_pct) })) : null,
    network: net ? net.slice(0, MAX_LIST_ITEMS) : null,
    agent: {
      connected: s.connection.state === 'connected',
      active_streams: s.streams.active.length,
      streams_total: s.streams.total,
      refused_total: s.streams.refused_total,
      bytes_to_target: s.bytes.to_target,
      bytes_from_target: s.bytes.from_target,
      reconnects: s.connection.reconnects,
      rss_bytes: process.memoryUsage.rss(),
    },
  };
}

export interface TelemetryOptions {
  intervalMs: number;
  snapshot: () => StatusSnapshot;
  /** Publishes one message on the telemetry topic (a no-op while disconnected). */
  publish: (payload: string) => void;
  log: Logger;
}

export class Telemetry {
  private timer?: NodeJS.Timeout;
  private busy = false;

  constructor(private readonly opts: TelemetryOptions) {}

  start(): void {
    if (this.opts.intervalMs <= 0) return;
    this.timer = setInterval(() => void this.sendNow(), this.opts.intervalMs);
    this.timer.unref();
  }

  /** Reads and publishes one health message (after a connect, and on the interval). Never throws. */
  async sendNow(): Promise<void> {
    if (this.opts.intervalMs <= 0 || this.busy) return;
    this.busy = true;
    try {
      const health = await readHealth(this.opts.snapshot());
      if (this.timer || this.opts.intervalMs > 0) this.opts.publish(JSON.stringify(health));
      this.opts.log.debug({ cpu: health.cpu, streams: health.agent.active_streams }, 'health telemetry sent');
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'health telemetry failed');
    } finally {
      this.busy = false;
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
