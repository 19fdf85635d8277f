import { execFile } from 'node:child_process';
import type { Logger } from '../core/log';

/**
 * sd_notify(3) for Type=notify units: READY, STATUS, WATCHDOG, STOPPING.
 *
 * Node has no AF_UNIX datagram sockets. Rather than a native addon (which would have to be built
 * for every ARM target and breaks the single-file bundle), each message is handed to systemd's own
 * `systemd-notify` (execFile, no shell). It is present wherever NOTIFY_SOCKET is set, handles
 * abstract-namespace sockets, and (systemd ≥ 246) waits on a BARRIER until the manager has read the
 * message, so a message from a short-lived helper is not lost. Because the sender is a child
 * process, the unit needs `NotifyAccess=all`. The cost is one short process per message: READY and
 * STOPPING once, STATUS on connection changes, WATCHDOG every WatchdogSec/2.
 *
 * Without NOTIFY_SOCKET (not under systemd, tests, a terminal) every call is a no-op.
 */
export const SYSTEMD_NOTIFY = 'systemd-notify';
const SEND_TIMEOUT_MS = 10_000;

export class SdNotify {
  private readonly socket: string | undefined;
  private readonly watchdogMs: number | undefined;
  private watchdog?: NodeJS.Timeout;
  private chain: Promise<void> = Promise.resolve();
  private pending = 0;
  private warned = false;

  constructor(
    private readonly log: Logger,
    env: NodeJS.ProcessEnv = process.env,
    private readonly command = SYSTEMD_NOTIFY,
  ) {
    this.socket = env.NOTIFY_SOCKET || undefined;
    const usec = Number(env.WATCHDOG_USEC);
    const forUs = !env.WATCHDOG_PID || Number(env.WATCHDOG_PID) === process.pid;
    this.watchdogMs = this.socket && forUs && Number.isFinite(usec) && usec > 0 ? Math.floor(usec / 1000) : undefined;
  }

  get enabled(): boolean {
    return this.socket !== undefined;
  }

  /** The watchdog interval systemd asked for, if any (ms). */
  get watchdogIntervalMs(): number | undefined {
    return this.watchdogMs;
  }

  ready(status?: string): Promise<void> {
    return this.send(['READY=1', ...(status ? [`STATUS=${status}`] : [])]);
  }

  status(text: string): Promise<void> {
    return this.send([`STATUS=${text}`]);
  }

  stopping(): Promise<void> {
    this.stopWatchdog();
    return this.send(['STOPPING=1']);
  }

  /** Pings at half the interval systemd set; a stuck event loop stops the pings and systemd restarts us. */
  startWatchdog(): void {
    if (!this.watchdogMs || this.watchdog) return;
    const ping = (): void => {
      // Never let pings queue up behind a slow manager: one in flight is enough.
      if (this.pending < 2) void this.send(['WATCHDOG=1']);
    };
    ping();
    this.watchdog = setInterval(ping, Math.max(500, Math.floor(this.watchdogMs / 2)));
    this.watchdog.unref();
  }

  stopWatchdog(): void {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  /** Messages go out one at a time, in order. Never rejects. */
  private send(assignments: string[]): Promise<void> {
    if (!this.socket) return Promise.resolve();
    const env = { ...process.env, NOTIFY_SOCKET: this.socket };
    this.pending++;
    this.chain = this.chain.then(
      () =>
        new Promise<void>((resolve) => {
          execFile(this.command, assignments, { env, timeout: SEND_TIMEOUT_MS, windowsHide: true }, (err) => {
            this.pending--;
            if (err && !this.warned) {
              this.warned = true;
              this.log.warn({ err: (err as NodeJS.ErrnoException).code ?? err.message, command: this.command }, 'sd_notify failed (is systemd-notify installed?)');
            }
            resolve();
          });
        }),
    );
    return this.chain;
  }
}
