import type { Logger } from '../core/log';

/**
 * One audit line per stream request, accepted or not, as a JSON log line (`audit: "stream"`), so it
 * lands in journald with everything else and can be filtered out of it. Never carries stream bytes
 * or tokens.
 */
export type AuditOutcome = 'closed' | 'refused' | 'malformed' | 'target-unavailable' | 'stream-failed';

export interface AuditRecord {
  request_id?: string | undefined;
  service?: string | undefined;
  /** Who asked for the stream, when the hub said (`$op`; IoT Hub does not). */
  operator?: string | undefined;
  target?: string | undefined;
  outcome: AuditOutcome;
  /** Bytes from the service side into the local target, and back. */
  bytes_to_target: number;
  bytes_from_target: number;
  duration_ms: number;
  reason?: string | undefined;
  /** PTY services: the user the session ran as, and how its shell ended. */
  user?: string | undefined;
  exit_code?: number | null | undefined;
  exit_signal?: string | null | undefined;
  /** PTY services: the shell or one command (`shell DEVICE -- CMD`; the command line itself is never logged), and whether on a terminal. */
  mode?: 'shell' | 'command' | undefined;
  tty?: boolean | undefined;
}

export function writeAudit(log: Logger, rec: AuditRecord): void {
  log.info({ audit: 'stream', ...rec }, `audit ${rec.outcome}`);
}
