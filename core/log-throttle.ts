import type { Logger } from './log';

/**
 * A warning that can come in floods (refused connections, handshake timeouts under load): the first
 * one is logged at once, then at most one line per interval carrying how many were not logged.
 */
export class ThrottledWarning {
  private suppressed = 0;
  private lastAt = 0;
  total = 0;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = 10_000,
  ) {}

  warn(fields: Record<string, unknown>, msg: string): void {
    this.total++;
    const now = Date.now();
    if (now - this.lastAt < this.intervalMs) {
      this.suppressed++;
      return;
    }
    this.log.warn({ ...fields, ...(this.suppressed ? { suppressed: this.suppressed } : {}), total: this.total }, this.suppressed ? `${msg} (and ${this.suppressed} more like it since the last line)` : msg);
    this.suppressed = 0;
    this.lastAt = now;
  }
}
