import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeFileAtomicSync } from '../core/atomic-file';
import { makeDirsSync } from '../core/make-dirs';
import type { Logger } from '../core/log';
import { terminalSafe } from '../core/terminal-text';

/**
 * What the agent is doing, for `devstreams status`, the metrics endpoint and telemetry: connection
 * state, open streams, totals and the most recent refusals. Kept in memory by the agent; written to
 * a small JSON file (atomically: temp file + rename) that the status command reads, so the command
 * needs no socket and works while the agent is wedged (the file then shows as stale).
 */
export const RECENT_REFUSALS = 20;
/** The file is rewritten at least this often so a reader can tell a live agent from a dead one. */
export const STATUS_REFRESH_MS = 10_000;
/** Writes after a change wait this long, so a burst of requests is one write. */
const STATUS_DEBOUNCE_MS = 200;

export interface OpenStream {
  request_id: string;
  service: string;
  target: string;
  since: string;
}

export interface Refusal {
  at: string;
  request_id?: string | undefined;
  service?: string | undefined;
  reason: string;
}

export interface StatusSnapshot {
  version: string;
  pid: number;
  device: string;
  hub: string;
  started_at: string;
  updated_at: string;
  connection: { state: 'connected' | 'disconnected'; since: string; reconnects: number; last_error?: string | undefined };
  /** failed: accepted streams that could not be set up, by cause (streaming endpoint, target). */
  streams: { active: OpenStream[]; total: number; refused_total: number; failed?: Record<string, number> };
  bytes: { to_target: number; from_target: number };
  recent_refusals: Refusal[];
}

export class AgentStats {
  readonly startedAt = new Date();
  streamsTotal = 0;
  refusedTotal = 0;
  /** Accepted streams that could not be set up, by audit outcome (`stream-failed`, `target-unavailable`). */
  readonly failed: Record<string, number> = {};
  bytesToTarget = 0;
  bytesFromTarget = 0;
  readonly open = new Map<number, OpenStream>();
  readonly recentRefusals: Refusal[] = [];
  connected = false;
  connectionSince = new Date();
  private listener?: () => void;

  /** One callback for "something changed" (the status file). */
  onChange(fn: () => void): void {
    this.listener = fn;
  }

  private changed(): void {
    this.listener?.();
  }

  setConnected(up: boolean): void {
    if (up === this.connected) return;
    this.connected = up;
    this.connectionSince = new Date();
    this.changed();
  }

  refused(r: Omit<Refusal, 'at'>): void {
    this.refusedTotal++;
    this.recentRefusals.unshift({ at: new Date().toISOString(), ...r, reason: r.reason.slice(0, 300) });
    this.recentRefusals.length = Math.min(this.recentRefusals.length, RECENT_REFUSALS);
    this.changed();
  }

  /** An accepted stream that could not be set up: the streaming endpoint or the target failed. */
  failedSetup(outcome: string): void {
    this.failed[outcome] = (this.failed[outcome] ?? 0) + 1;
    this.changed();
  }

  /** Returns the key `closed` takes (request ids come from outside and need not be unique). */
  opened(s: Omit<OpenStream, 'since'>): number {
    const key = ++this.streamsTotal;
    this.open.set(key, { ...s, since: new Date().toISOString() });
    this.changed();
    return key;
  }

  closed(key: number, bytesToTarget: number, bytesFromTarget: number): void {
    this.open.delete(key);
    this.bytesToTarget += bytesToTarget;
    this.bytesFromTarget += bytesFromTarget;
    this.changed();
  }
}

export function statusSnapshot(
  stats: AgentStats,
  info: { version: string; device: string; hub: string; reconnects: number; lastError?: string | undefined },
): StatusSnapshot {
  return {
    version: info.version,
    pid: process.pid,
    device: info.device,
    hub: info.hub,
    started_at: stats.startedAt.toISOString(),
    updated_at: new Date().toISOString(),
    connection: {
      state: stats.connected ? 'connected' : 'disconnected',
      since: stats.connectionSince.toISOString(),
      reconnects: info.reconnects,
      ...(info.lastError && !stats.connected ? { last_error: info.lastError } : {}),
    },
    streams: { active: [...stats.open.values()], total: stats.streamsTotal, refused_total: stats.refusedTotal, failed: { ...stats.failed } },
    bytes: { to_target: stats.bytesToTarget, from_target: stats.bytesFromTarget },
    recent_refusals: [...stats.recentRefusals],
  };
}

/** Where the status file lives when the config does not say: systemd's RuntimeDirectory. */
export function defaultStatusFile(env: NodeJS.ProcessEnv = process.env): string {
  const runtime = env.RUNTIME_DIRECTORY?.split(':')[0];
  return runtime ? join(runtime, 'status.json') : '/run/devstreams/status.json';
}

/** Writes the snapshot on change (debounced) and every STATUS_REFRESH_MS. I/O errors are logged once, never fatal. */
export class StatusFile {
  private refresh?: NodeJS.Timeout;
  private debounce?: NodeJS.Timeout;
  private failed = false;

  constructor(
    private readonly file: string,
    private readonly snapshot: () => StatusSnapshot,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.write();
    this.refresh = setInterval(() => this.write(), STATUS_REFRESH_MS);
    this.refresh.unref();
  }

  changed(): void {
    if (this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.write();
    }, STATUS_DEBOUNCE_MS);
    this.debounce.unref();
  }

  /**
   * Atomic and safe in a directory others can write (core/atomic-file.ts: exclusive, no-follow temp
   * file with its mode set on the descriptor, removed on failure). Readable by anyone who may run
   * `devstreams status` (it holds no secret); the unit's UMask=0077 would otherwise leave it 0600.
   */
  write(): void {
    const text = `${JSON.stringify(this.snapshot(), null, 2)}\n`;
    try {
      try {
        writeFileAtomicSync(this.file, text, 0o644, { durable: false });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        // The directory is missing: make it, and report why not (EROFS, EACCES) rather than ENOENT.
        makeDirsSync(dirname(this.file));
        writeFileAtomicSync(this.file, text, 0o644, { durable: false });
      }
      if (this.failed) this.log.info({ file: this.file }, 'status file written again');
      this.failed = false;
    } catch (err) {
      if (!this.failed) this.log.warn({ file: this.file, err: (err as NodeJS.ErrnoException).code ?? (err as Error).message }, 'cannot write the status file; devstreams status will not see this agent');
      this.failed = true;
    }
  }

  stop(): void {
    clearInterval(this.refresh);
    clearTimeout(this.debounce);
    this.debounce = undefined;
    this.write();
  }
}

export function readStatusFile(file: string): StatusSnapshot {
  return JSON.parse(readFileSync(file, 'utf8')) as StatusSnapshot;
}

function ago(iso: string, now: number): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The agent that wrote the file is gone (its pid is not running) or stuck (no refresh for 30 s). */
export function statusIsStale(s: StatusSnapshot, now = Date.now()): boolean {
  return now - Date.parse(s.updated_at) > 3 * STATUS_REFRESH_MS || !pidAlive(s.pid);
}

/**
 * What to say about an agent whose status file is stale: it may be running and unable to write the
 * file (a read-only or full file system), stuck, or gone. `agents`: pids of agents running now
 * (agent-processes.ts). Never "not running" while an agent runs.
 */
function staleNote(s: StatusSnapshot, now: number, agents: readonly number[]): string {
  const written = `status last written ${ago(s.updated_at, now)} ago`;
  if (pidAlive(s.pid)) return ` (RUNNING but not updating its status file: it cannot write it (see its log) or is stuck; ${written})`;
  const others = agents.filter((pid) => pid !== s.pid);
  if (others.length > 0) {
    return ` (has exited; an agent is running as pid ${others.join(', ')} but has not written this file: it cannot (see its log) or uses another status_file; ${written})`;
  }
  return ` (NOT RUNNING: no such process; ${written})`;
}

/** The text `devstreams status` prints. */
export function formatStatus(s: StatusSnapshot, now = Date.now(), agents: readonly number[] = []): string {
  const stale = statusIsStale(s, now);
  const lines = [
    `agent ${s.version} pid ${s.pid}${stale ? staleNote(s, now, agents) : ''}, up ${ago(s.started_at, now)}`,
    `device ${s.device} on hub ${s.hub}: ${s.connection.state} for ${ago(s.connection.since, now)}, ${s.connection.reconnects} reconnects` +
      (s.connection.last_error ? ` (last error: ${s.connection.last_error})` : ''),
    `streams: ${s.streams.active.length} open, ${s.streams.total} accepted, ${s.streams.refused_total} refused; bytes to target ${s.bytes.to_target}, from target ${s.bytes.from_target}`,
  ];
  for (const o of s.streams.active) lines.push(`  open  ${o.service} rid=${o.request_id} -> ${o.target} for ${ago(o.since, now)}`);
  if (s.recent_refusals.length) lines.push('recent refusals:');
  for (const r of s.recent_refusals) lines.push(`  ${r.at} ${r.service ?? '-'} rid=${r.request_id ?? '-'}: ${r.reason}`);
  // Reasons, service names, request ids and errors come from the network: nothing reaches the terminal raw.
  return `${lines.map((l) => terminalSafe(l, 2000)).join('\n')}\n`;
}
