import type { Logger } from '../../core/log';
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
