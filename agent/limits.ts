import { formatDurationMs } from '../core/duration';
import type { AgentConfigFile } from './config';

/**
 * Stream limits from the config: concurrent streams on the device and per service (checked before
 * anything is dialed), and per-stream idle timeout and maximum duration (enforced while it runs).
 * A refusal or a cut names the limit and the config key that sets it, so an operator knows what to
 * raise.
 */
export interface ServiceLimits {
  maxStreams: number;
  /** 0 = never. */
  idleTimeoutMs: number;
  /** 0 = never. */
  maxDurationMs: number;
}

type LimitsConfig = Pick<AgentConfigFile, 'limits'> & {
  services: Record<string, { max_streams?: number | undefined; idle_timeout?: number | undefined; max_duration?: number | undefined }>;
};

export type Admission = { ok: true; limits: ServiceLimits; release: () => void } | { ok: false; reason: string };

export class StreamLimits {
  private readonly open = new Map<string, number>();
  private total = 0;

  constructor(private config: LimitsConfig) {}

  /** A reloaded config applies to new streams; open ones keep the limits they started with. */
  update(config: LimitsConfig): void {
    this.config = config;
  }

  limitsFor(service: string): ServiceLimits {
    const { limits } = this.config;
    const svc = Object.hasOwn(this.config.services, service) ? this.config.services[service] : undefined;
    return {
      maxStreams: svc?.max_streams ?? limits.max_streams_per_service,
      idleTimeoutMs: svc?.idle_timeout ?? limits.idle_timeout,
      maxDurationMs: svc?.max_duration ?? limits.max_duration,
    };
  }

  /** Takes a slot for one stream to `service`, or says which limit is full. */
  admit(service: string): Admission {
    const limits = this.limitsFor(service);
    const globalMax = this.config.limits.max_streams;
    if (this.total >= globalMax) return { ok: false, reason: `limit reached: ${globalMax} concurrent streams on this device (limits.max_streams)` };
    const open = this.open.get(service) ?? 0;
    if (open >= limits.maxStreams) {
      const key = Object.hasOwn(this.config.services, service) && this.config.services[service]?.max_streams !== undefined ? `services.${service}.max_streams` : 'limits.max_streams_per_service';
      return { ok: false, reason: `limit reached: ${limits.maxStreams} concurrent streams to service "${service}" (${key})` };
    }
    this.total++;
    this.open.set(service, open + 1);
    let released = false;
    return {
      ok: true,
      limits,
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        const n = (this.open.get(service) ?? 1) - 1;
        if (n <= 0) this.open.delete(service);
        else this.open.set(service, n);
      },
    };
  }
}

export interface StreamTimer {
  /** Call on every byte moved (cheap: it only records the time). */
  activity(): void;
  stop(): void;
}

/**
 * Idle and maximum-duration expiry for one stream. Activity only stamps a time; one timer re-arms
 * itself for the earliest deadline, so a busy stream costs no timer churn per chunk.
 */
export function watchStream(limits: ServiceLimits, expire: (reason: string) => void, now: () => number = Date.now): StreamTimer {
  const started = now();
  let last = started;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const arm = (): void => {
    if (stopped) return;
    const t = now();
    if (limits.maxDurationMs > 0 && t - started >= limits.maxDurationMs) {
      stopped = true;
      return expire(`maximum duration ${formatDurationMs(limits.maxDurationMs)} reached (max_duration)`);
    }
    if (limits.idleTimeoutMs > 0 && t - last >= limits.idleTimeoutMs) {
      stopped = true;
      return expire(`idle for ${formatDurationMs(limits.idleTimeoutMs)} (idle_timeout)`);
    }
    const deadlines = [
      ...(limits.maxDurationMs > 0 ? [started + limits.maxDurationMs] : []),
      ...(limits.idleTimeoutMs > 0 ? [last + limits.idleTimeoutMs] : []),
    ];
    if (deadlines.length === 0) return;
    timer = setTimeout(arm, Math.max(10, Math.min(...deadlines) - t));
    timer.unref();
  };
  arm();
  return {
    activity: () => {
      last = now();
    },
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
