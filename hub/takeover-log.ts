import type { Logger } from '../core/log';

/** At most one takeover line per device in this long; the ones in between are counted. */
export const TAKEOVER_LOG_INTERVAL_MS = 10 * 60_000;

interface Entry {
  loggedAtMs: number;
  suppressed: number;
}

/**
 * Says when a device id connects while a connection with that id is up: MQTT (and IoT Hub) let the
 * new connection take over and close the old one. Two devices sharing one identity (a cloned SD card)
 * do this to each other over and over; one line names both remote addresses, then at most one line
 * per device every TAKEOVER_LOG_INTERVAL_MS carries how many takeovers happened in between.
 */
export class TakeoverLog {
  /** One entry per device id that authenticated: bounded by the registry. */
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  note(deviceId: string, replacedRemote: string, newRemote: string): void {
    const now = this.now();
    const e = this.entries.get(deviceId);
    if (e && now - e.loggedAtMs < TAKEOVER_LOG_INTERVAL_MS) {
      e.suppressed++;
      return;
    }
    const since = e ? { takeovers_since_last_line: e.suppressed + 1 } : {};
    this.entries.set(deviceId, { loggedAtMs: now, suppressed: 0 });
    this.log.warn(
      { device: deviceId, replaced_remote: replacedRemote, new_remote: newRemote, ...since },
      'device connected again while connected: the new connection replaces the old one (two devices with the same id, e.g. a cloned SD card, take turns)',
    );
  }
}
