import type { OpenStreamView as OpenStream } from '../../stream-views';

export type { OpenStream };

/** One line of the hub's stream audit (hub/stream-audit.ts), the fields the console shows. */
export interface AuditLine {
  time: string;
  operator?: string;
  remote?: string;
  device: string;
  service: string;
  outcome: string;
  reason?: string;
  bytes_service_to_device: number;
  bytes_device_to_service: number;
  duration_ms: number;
}

/** The live state the hub sends (hub/console/live.ts), as the browser reads it. */
export interface Health {
  version?: string;
  cpu?: { load_pct?: number | null; temp_c?: number | null };
  memory?: { used_pct?: number } | null;
  disks?: Array<{ mount?: string; used_pct?: number }> | null;
}

export interface Device {
  deviceId: string;
  connectionState: 'Connected' | 'Disconnected';
  connectedSince?: string | null;
  lastActivityTime: string | null;
  activeStreams: number;
  health: Health | null;
}

export interface LiveState {
  devices: Device[];
  streams: OpenStream[];
  audit: AuditLine[];
}

/** A number from telemetry, or undefined when the device sent something else. */
export function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

export function rootDisk(h: Health | null): number | undefined {
  const disks = Array.isArray(h?.disks) ? h!.disks! : [];
  const root = disks.find((d) => d?.mount === '/') ?? disks[0];
  return num(root?.used_pct);
}
