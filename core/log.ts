import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import { journaldDestination, stderrIsJournal } from './journald';

export type { Logger };

export interface LogOptions {
  level?: string;
  /** `json` (machines), `journald` (json with a `<N>` priority prefix, chosen by itself under systemd) or `pretty` (a person at a terminal). */
  format?: 'json' | 'pretty' | 'journald';
}

/**
 * One logger per process, JSON lines on stderr so stdout stays for what a command prints (a
 * connection string, a listen address). Secrets are never passed to it; the redact list is a second
 * line of defence for fields that could carry one.
 */
export function createLogger(name: string, opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.DEVSTREAMS_LOG_LEVEL ?? 'info';
  const envFormat = process.env.DEVSTREAMS_LOG_FORMAT;
  const format =
    opts.format ?? (envFormat === 'json' || envFormat === 'pretty' || envFormat === 'journald' ? envFormat : stderrIsJournal() ? 'journald' : process.stderr.isTTY ? 'pretty' : 'json');
  const options = {
    name,
    level,
    base: { pid: process.pid },
    redact: { paths: ['password', 'token', 'authToken', 'sharedAccessKey', 'connectionString', '*.password', '*.token', '*.authToken'], censor: '[redacted]' },
  };
  if (format === 'pretty') {
    return pino(options, pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' }));
  }
  if (format === 'journald') return pino(options, journaldDestination());
  return pino(options, pino.destination({ fd: 2, sync: true }));
}

/** A logger that writes nothing, for library use and tests that do not read logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
