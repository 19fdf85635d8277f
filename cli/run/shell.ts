import { parseDurationMs } from '../../core/duration';
import { createLogger } from '../../core/log';
import { runShell } from '../../service/shell';
import { DevstreamsError } from '../../wire';
import { EXIT } from '../exit-codes';
import { serviceClient, type ServiceCliOptions } from './service-client';

export interface ShellCliOptions extends ServiceCliOptions {
  /** -t: true, -T: false, neither: undefined (commander's --no-tty default is true: see below). */
  tty?: boolean;
  timeout?: string;
}

/** `--timeout 30` (seconds, as ssh's ConnectTimeout and timeout(1)) or a duration (`30s`, `2m`). */
function parseTimeoutMs(text: string): number {
  const ms = /^\d+$/.test(text.trim()) ? Number(text) * 1000 : parseDurationMs(text);
  if (!ms) throw new DevstreamsError('EUSAGE', `--timeout wants seconds or a duration such as 30s or 2m, not "${text}"`);
  return ms;
}

/**
 * DEVICE [SERVICE] [-- CMD ARGS]: what commander gives as `rest` is SERVICE (maybe) then the words
 * after `--`, which it does not mark; the words after `--` in argv are the command.
 */
function splitCommand(rest: string[], argv: string[]): { service: string | undefined; command: string[] | undefined } {
  const dashes = argv.indexOf('--');
  const command = dashes >= 0 ? argv.slice(dashes + 1) : [];
  if (dashes >= 0 && command.length === 0) throw new DevstreamsError('EUSAGE', 'nothing after --: give the command to run (shell DEVICE -- CMD [ARGS...])');
  const before = rest.slice(0, rest.length - command.length);
  if (before.length > 1) throw new DevstreamsError('EUSAGE', `a command goes after --: devstreams shell DEVICE [SERVICE] -- ${before.slice(1).join(' ')}`);
  return { service: before[0], command: command.length ? command : undefined };
}

/** `devstreams shell DEVICE [SERVICE] [-- CMD ARGS]`: exits with the remote status. */
export async function runShellCommand(device: string, rest: string[], opts: ShellCliOptions): Promise<void> {
  const { service, command } = splitCommand(rest, process.argv);
  // commander sets tty=true by default because of --no-tty; only the flags the person gave count.
  const given = process.argv.slice(0, process.argv.includes('--') ? process.argv.indexOf('--') : undefined);
  const tty = given.some((a) => a === '-T' || a === '--no-tty') ? false : given.some((a) => a === '-t' || a === '--tty') ? true : undefined;
  const timeoutMs = opts.timeout ? parseTimeoutMs(opts.timeout) : undefined;
  // Logs would garble a raw terminal: only warnings, and only when asked for more.
  const log = createLogger('shell', { level: process.env.DEVSTREAMS_LOG_LEVEL ?? 'warn' });
  const client = serviceClient(opts);
  const timer = timeoutMs
    ? setTimeout(() => {
        process.stderr.write(`devstreams: ${device}: gave up after --timeout ${opts.timeout}\n`);
        process.exit(EXIT.TIMEOUT); // the terminal is restored by runShell's exit hook
      }, timeoutMs)
    : undefined;
  timer?.unref();
  try {
    process.exitCode = await runShell({
      client,
      deviceId: device,
      service: service ?? 'shell',
      stdin: process.stdin,
      stdout: process.stdout,
      stderr: process.stderr,
      sizeFrom: [process.stdout, process.stderr],
      ...(command ? { command } : {}),
      ...(tty !== undefined ? { tty } : {}),
      log,
    });
  } finally {
    clearTimeout(timer);
    client.close();
    process.stdin.destroy();
  }
}
