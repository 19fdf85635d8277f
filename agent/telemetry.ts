import { loadavg } from 'node:os';
import si from 'systeminformation';
import type { Logger } from '../core/log';
import type { StatusSnapshot } from './status';

/**
 * Health telemetry: a small JSON document on IoT Hub's device-to-cloud topic every `telemetry.interval`
 * (and once after each connect), read with systeminformation. Any figure that cannot be read (no
 * thermal sensor in a VM, a slow `df`) is null; a failed reading never stops the agent or the
 * other figures.
 */
export const HEALTH_SCHEMA = 'devstreams.health/1';
/** One reading may not take longer than this (systeminformation spawns tools on some systems). */
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
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([what(), new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), READ_TIMEOUT_MS)))]);
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

const round1 = (n: number): number => Math.round(n * 10) / 10;

export async function readHealth(s: StatusSnapshot): Promise<Health> {
  const [load, temp, mem, fs, net] = await Promise.all([
    read(() => si.currentLoad()),
    read(() => si.cpuTemperature()),
    read(() => si.mem()),
    read(() => si.fsSize()),
    read(() => si.networkStats('*')),
  ]);
  return {
    schema: HEALTH_SCHEMA,
    device: s.device,
    version: s.version,
    at: new Date().toISOString(),
    uptime_s: Math.round(si.time().uptime),
    agent_uptime_s: Math.round((Date.now() - Date.parse(s.started_at)) / 1000),
    cpu: {
      load_pct: load && Number.isFinite(load.currentLoad) ? round1(load.currentLoad) : null,
      load_avg_1m: round1(loadavg()[0] ?? 0),
      temp_c: temp && typeof temp.main === 'number' && Number.isFinite(temp.main) ? round1(temp.main) : null,
    },
    memory: mem ? { total_bytes: mem.total, available_bytes: mem.available, used_pct: round1(((mem.total - mem.available) / mem.total) * 100) } : null,
    disks: fs ? fs.slice(0, MAX_LIST_ITEMS).map((d) => ({ mount: d.mount, size_bytes: d.size, used_pct: round1(d.use ?? 0) })) : null,
    network: net
      ? net
          .filter((n) => n.iface !== 'lo')
          .slice(0, MAX_LIST_ITEMS)
          .map((n) => ({ iface: n.iface, rx_bytes: n.rx_bytes, tx_bytes: n.tx_bytes }))
      : null,
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
