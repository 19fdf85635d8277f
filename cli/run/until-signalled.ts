import { parseDurationMs } from '../../core/duration';
import type { Logger } from '../../core/log';
import { DevstreamsError } from '../../wire';
import { EXIT } from '../exit-codes';

interface Stoppable {
  stop(): Promise<void>;
}

/**
 * SIGTERM/SIGINT stop the part gracefully and exit 0; a second signal exits at once. Call it before
 * `start()`: a supervisor may signal as soon as it sees the first line of output.
 */
export function runUntilSignalled(part: Stoppable, log: Logger): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(EXIT.FAILURE);
    }
    stopping = true;
    log.info({ signal }, 'stopping');
    part
      .stop()
      .catch((err: unknown) => log.error({ err }, 'error while stopping'))
      .finally(() => process.exit(EXIT.OK));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/** A `--flag 30s` duration in milliseconds; a usage error (exit 64) naming the flag otherwise. */
export function durationOption(text: string, flag: string, minMs = 0): number {
  const ms = parseDurationMs(text);
  if (ms === undefined || ms < minMs) throw new DevstreamsError('EUSAGE', `${flag} wants a duration such as 500ms, 30s or 2m${minMs ? ` (at least ${minMs}ms)` : ''}, not "${text}"`);
  return ms;
}
