import type { ServerResponse } from 'node:http';
import type { ControlPlane } from '../control-plane';
import type { DeviceHealth, DeviceView } from '../devices';
import type { HubAuditRecord, StreamAudit } from '../stream-audit';
import type { OpenStreamView, StreamingEndpoint } from '../streaming-endpoint';

/** How often the live view is sent even when nothing announced a change (last seen, stream bytes). */
export const LIVE_TICK_MS = 2_000;
/** Changes (a device online, telemetry) are batched for this long before they go out. */
export const LIVE_BATCH_MS = 200;
/** Live views open at once (every tab of every session); past it, 503 and the browser retries. */
export const LIVE_MAX_CLIENTS = 256;
/** A browser that reads slower than this much queued output is cut (it reconnects on its own). */
export const LIVE_MAX_QUEUED_BYTES = 1024 * 1024;

/** Audit lines in the live view, newest first. */
export const LIVE_AUDIT_LINES = 50;

export interface LiveState {
  devices: DeviceView[];
  streams: OpenStreamView[];
  /** The hub's recent audit records (hub/stream-audit.ts), newest first. */
  audit: HubAuditRecord[];
}

/** Which devices a browser may see (its operator's device limits). */
export type DeviceFilter = (deviceId: string) => boolean;

interface Client {
  res: ServerResponse;
  sees: DeviceFilter;
}

/**
 * The console's live view as server-sent events: the whole state (devices with their health, open
 * streams, the recent audit lines) as one `state` event whenever something changed, at most every
 * 200 ms, and every 2 s regardless. A few dozen devices are a few kB; whole snapshots keep the
 * browser side trivial and a reconnect needs no replay.
 */
export class LiveFeed {
  private readonly clients = new Set<Client>();
  private tick?: NodeJS.Timeout;
  private batch?: NodeJS.Timeout;
  private readonly onChange = (): void => this.schedule();

  constructor(
    private readonly broker: ControlPlane,
    private readonly devices: DeviceHealth,
    private readonly endpoint: StreamingEndpoint,
    private readonly audit?: StreamAudit,
  ) {}

  start(): void {
    this.broker.on('online', this.onChange);
    this.broker.on('offline', this.onChange);
    this.broker.on('telemetry', this.onChange);
    this.endpoint.onStreamsChanged = this.onChange;
    this.audit?.on('audit', this.onChange);
    this.tick = setInterval(() => this.broadcast(), LIVE_TICK_MS);
    this.tick.unref();
  }

  /** What one operator may see now. */
  state(sees: DeviceFilter = () => true): LiveState {
    return {
      devices: this.devices.list().filter((d) => sees(d.deviceId)),
      streams: this.endpoint.list().filter((s) => sees(s.deviceId)),
      audit: (this.audit?.recent() ?? []).filter((a) => sees(a.device)).slice(-LIVE_AUDIT_LINES).reverse(),
    };
  }

  /** Subscribes one browser; returns the function that ends it. */
  add(res: ServerResponse, sees: DeviceFilter): () => void {
    if (this.clients.size >= LIVE_MAX_CLIENTS) {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '5' }).end('too many live views open\n');
      return () => undefined;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    res.write('retry: 2000\n\n');
    const client = { res, sees };
    this.clients.add(client);
    this.send(client);
    const end = (): void => {
      this.clients.delete(client);
      res.end();
    };
    res.on('close', () => this.clients.delete(client));
    return end;
  }

  private send(client: Client): void {
    const { res } = client;
    if (res.writableLength > LIVE_MAX_QUEUED_BYTES) {
      this.clients.delete(client);
      res.destroy();
      return;
    }
    res.write(`event: state\ndata: ${JSON.stringify(this.state(client.sees))}\n\n`);
  }

  /** Something changed: the state goes out soon (the next change in the same batch rides along). */
  schedule(): void {
    if (this.batch || this.clients.size === 0) return;
    this.batch = setTimeout(() => {
      this.batch = undefined;
      this.broadcast();
    }, LIVE_BATCH_MS);
  }

  private broadcast(): void {
    for (const client of [...this.clients]) this.send(client);
  }

  stop(): void {
    clearInterval(this.tick);
    clearTimeout(this.batch);
    this.broker.off('online', this.onChange);
    this.broker.off('offline', this.onChange);
    this.broker.off('telemetry', this.onChange);
    this.endpoint.onStreamsChanged = undefined;
    this.audit?.off('audit', this.onChange);
    for (const { res } of this.clients) res.end();
    this.clients.clear();
  }
}
