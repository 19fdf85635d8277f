import { EventEmitter } from 'node:events';
import type { Logger } from '../core/log';
import { formatBytes } from '../core/format';

/**
 * The hub's audit of who did what: one line per stream request (`audit: "stream"` in the JSON log,
 * so it lands in journald with everything else and can be filtered out of it): which operator, from
 * where, to which device and service, how it ended and why, bytes each way and how long. A request
 * the hub or the device refused is audited where it ends (the service API); an accepted one when its
 * stream ends at the streaming endpoint. The most recent records stay in memory for the console.
 * Never carries stream bytes, tokens or keys.
 */
export const RECENT_AUDIT_RECORDS = 200;

export type HubAuditOutcome =
  /** The stream ran and ended (`close` says how). */
  | 'closed'
  /** The hub refused it before asking the device (credential, limits, throttled, device unknown/offline/disabled). */
  | 'denied'
  /** The device answered no. */
  | 'refused'
  /** The device did not answer, or a side never connected to the streaming endpoint. */
  | 'timeout';

export interface HubAuditRecord {
  time: string;
  operator?: string | undefined;
  /** The operator's address as the hub saw it (REST request, or its WebSocket to the streaming endpoint). */
  remote?: string | undefined;
  device: string;
  service: string;
  /** First 8 hex digits of the stream id, as in the other hub log lines. */
  stream?: string | undefined;
  outcome: HubAuditOutcome;
  /** Why it ended or was refused, in words. */
  reason?: string | undefined;
  /** WebSocket close codes of each side (1000: normal; 1006: connection lost). */
  device_close?: number | undefined;
  service_close?: number | undefined;
  bytes_service_to_device: number;
  bytes_device_to_service: number;
  duration_ms: number;
}

export interface StreamAuditEvents {
  audit: [HubAuditRecord];
}

export class StreamAudit extends EventEmitter<StreamAuditEvents> {
  private readonly recentRecords: HubAuditRecord[] = [];

  constructor(private readonly log: Logger) {
    super();
  }

  record(rec: Omit<HubAuditRecord, 'time' | 'bytes_service_to_device' | 'bytes_device_to_service' | 'duration_ms'> & Partial<HubAuditRecord>): void {
    const full: HubAuditRecord = { time: new Date().toISOString(), bytes_service_to_device: 0, bytes_device_to_service: 0, duration_ms: 0, ...rec };
    const who = full.operator ?? 'unknown operator';
    const bytes = full.outcome === 'closed' ? ` service→device ${formatBytes(full.bytes_service_to_device)} device→service ${formatBytes(full.bytes_device_to_service)}` : '';
    this.log.info({ audit: 'stream', ...full }, `audit ${full.outcome}: ${who} → ${full.device}/${full.service}${bytes}${full.reason ? ` (${full.reason})` : ''}`);
    this.recentRecords.push(full);
    if (this.recentRecords.length > RECENT_AUDIT_RECORDS) this.recentRecords.shift();
    this.emit('audit', full);
  }

  /** The most recent records, oldest first. */
  recent(): HubAuditRecord[] {
    return [...this.recentRecords];
  }
}
