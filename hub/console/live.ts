import type { ServerResponse } from 'node:http';
import type { ControlPlane } from '../control-plane';
import type { DeviceHealth, DeviceView } from '../devices';
import type { ClosedStreamView, OpenStreamView, StreamingEndpoint } from '../streaming-endpoint';

/** How often the live view is sent even when nothing announced a change (last seen, stream bytes). */
export const LIVE_TICK_MS = 2_000;
/** Changes (a device online, telemetry) are batched for this long before they go out. */
export const LIVE_BATCH_MS = 200;
/** A browser that reads slower than this much queued output is cut (it reconnects on its own). */
export const LIVE_MAX_QUEUED_BYTES = 1024 * 1024;

export interface LiveState {
  devices: DeviceView[];
  streams: OpenStreamView[];
  recent: ClosedStreamView[];
}

/**
 * The console's live view as server-sent events: the whole state (devices with their health, open
 * streams, recently closed streams) as one `state` event whenever something changed, at most every
 * 200 ms, and every 2 s regardless. A few dozen devices are a few kB; whole snapshots keep the
 * browser side trivial and a reconnect needs no replay.
 */
export class LiveFeed {
  private readonly clients = new Set<ServerResponse>();
  private tick?: NodeJS.Timeout;
  private batch?: NodeJS.Timeout;
  private readonly onChange = (): void => this.schedule();

  constructor(
    private readonly broker: ControlPlane,
    private readonly devices: DeviceHealth,
    private readonly endpoint: StreamingEndpoint,
  ) {}

  start(): void {
    this.broker.on('online', this.onChange);
    this.broker.on('offline', this.onChange);
    this.broker.on('telemetry', this.onChange);
    this.endpoint.onStreamsChanged = this.onChange;
    this.tick = setInterval(() => this.broadcast(), LIVE_TICK_MS);
    this.tick.unref();
  }

  state(): LiveState {
    return { devices: this.devices.list(), streams: this.endpoint.list(), recent: this.endpoint.recentlyClosed() };
  }

  /** Subscribes one browser; returns the function that ends it. */
  add(res: ServerResponse): () => void {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    res.write('retry: 2000\n\n');
    this.clients.add(res);
    this.send(res, this.event());
    const end = (): void => {
      this.clients.delete(res);
      res.end();
    };
    res.on('close', () => this.clients.delete(res));
    return end;
  }

  private event(): string {
    return `event: state\ndata: ${JSON.stringify(this.state())}\n\n`;
  }

  private send(res: ServerResponse, text: string): void {
    if (res.writableLength > LIVE_MAX_QUEUED_BYTES) {
      this.clients.delete(res);
      res.destroy();
      return;
    }
    res.write(text);
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
    if (this.clients.size === 0) return;
    const text = this.event();
    for (const res of [...this.clients]) this.send(res, text);
  }

  stop(): void {
    clearInterval(this.tick);
    clearTimeout(this.batch);
    this.broker.off('online', this.onChange);
    this.broker.off('offline', this.onChange);
    this.broker.off('telemetry', this.onChange);
    this.endpoint.onStreamsChanged = undefined;
    for (const res of this.clients) res.end();
    this.clients.clear();
  }
}
