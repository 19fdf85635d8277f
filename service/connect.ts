import { createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { formatHostPort } from '../core/address';
import { formatBytes } from '../core/format';
import type { Logger } from '../core/log';
import { resetLocal, startTunnel } from '../core/tunnel';
import { closeStreamSocket } from '../core/ws-sink';
import { LISTEN_BACKLOG, describeFdExhaustion, isFdExhaustion } from '../core/fd-limit';
import { ThrottledWarning } from '../core/log-throttle';
import { SetupGate } from '../core/setup-gate';
import { CLOSE, DevstreamsError, STREAM_HANDSHAKE_TIMEOUT_S, isDevstreamsError } from '../wire';
import type { WebSocket } from 'ws';
import { HubClient } from './hub-client';

/** Streams being set up at once: each holds a client connection and a request to the hub. */
export const MAX_SETUPS = 16;
/** Connections that may wait for a setup place, each at most SETUP_WAIT_MS; the rest are reset at once. */
export const MAX_SETUPS_WAITING = 64;
export const SETUP_WAIT_MS = 10_000;
/** A stream must be open within this: the 60 s the hub gives the device to answer, plus 10 s for the WebSocket. */
export const SETUP_TIMEOUT_MS = STREAM_HANDSHAKE_TIMEOUT_S * 1000 + 10_000;
/**
 * What one stream may queue towards the hub before its client is paused: twice the tunnel's default
 * (core/ws-sink.ts), because larger batches make TLS cheaper per byte (CPU per GiB sent −5 %,
 * docs/benchmarks.md). The agent keeps the default: memory is what a Pi is short of.
 */
export const CONNECT_WS_HIGH_WATER_BYTES = 1024 * 1024;

export interface ConnectOptions {
  client: HubClient;
  deviceId: string;
  service: string;
  listen: { host: string; port: number };
  /** Streaming WebSocket ping interval (liveness: a hub silent for two of these is gone). */
  pingIntervalMs?: number;
  /** Deadline for one stream's setup (SETUP_TIMEOUT_MS). */
  setupTimeoutMs?: number;
  log: Logger;
}

/**
 * `devstreams connect`: a local port where every accepted TCP connection becomes a new stream to one
 * device service, the way `ssh -L` feels. A failed stream resets that one connection with a message
 * in the log; the port keeps listening. Bounded: MAX_SETUPS streams are set up at once, a few more
 * wait briefly, the rest are reset at once, and every setup has a deadline naming what timed out.
 */
export class Connect {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private connections = 0;
  private readonly gate = new SetupGate(MAX_SETUPS, MAX_SETUPS_WAITING, SETUP_WAIT_MS);
  private readonly refusals: ThrottledWarning;

  constructor(private readonly opts: ConnectOptions) {
    this.refusals = new ThrottledWarning(opts.log);
  }

  get address(): { host: string; port: number } {
    const a = this.server?.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  async start(): Promise<void> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => this.onConnection(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.opts.listen.port, host: this.opts.listen.host, backlog: LISTEN_BACKLOG }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Once listening, errors are accept errors (out of descriptors): named with the limit, never fatal.
    server.on('error', (err) => this.refusals.warn({ err: (err as NodeJS.ErrnoException).code }, `cannot accept a connection: ${isFdExhaustion(err) ? describeFdExhaustion(err) : err.message}`));
    this.server = server;
  }

  private async onConnection(socket: Socket): Promise<void> {
    const { deviceId, service } = this.opts;
    const n = ++this.connections;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined); // handled by the tunnel or by the reset below
    const log = this.opts.log.child({ conn: n, device: deviceId, svc: service });
    let release: () => void;
    try {
      release = await this.gate.acquire();
    } catch (err) {
      this.refusals.warn({ code: (err as DevstreamsError).code, open: this.sockets.size }, `connection refused: ${(err as Error).message}`);
      resetLocal(socket);
      return;
    }
    let ws: WebSocket;
    try {
      if (socket.destroyed) return; // the client gave up while it waited
      ws = await this.setUp(log);
    } catch (err) {
      log.error({ code: isDevstreamsError(err) ? err.code : undefined }, `stream to ${deviceId}/${service} failed: ${(err as Error).message}`);
      resetLocal(socket); // the client must not take a stream that never opened for an empty one
      return;
    } finally {
      release();
    }
    if (socket.destroyed) return closeStreamSocket(ws, CLOSE.NORMAL, '');
    const r = await startTunnel(socket, ws, {
      highWaterBytes: CONNECT_WS_HIGH_WATER_BYTES,
      ...(this.opts.pingIntervalMs ? { pingIntervalMs: this.opts.pingIntervalMs } : {}),
    }).done;
    // Only an end both sides agreed on (1000) reached the client as a FIN; the rest (1001 included) was a reset.
    const why = r.closeReason || (r.error ? ((r.error as NodeJS.ErrnoException).code ?? r.error.message) : r.closeCode === 1006 ? 'connection to the hub lost' : '');
    const msg = `stream ${r.clean ? 'closed' : 'reset'}${why ? `: ${why}` : ''} (${r.closeCode}), sent ${formatBytes(r.bytesOut)} received ${formatBytes(r.bytesIn)}`;
    log[r.clean ? 'info' : 'warn']({ close_code: r.closeCode, bytes_out: r.bytesOut, bytes_in: r.bytesIn }, msg);
  }

  /** Stream request, then the streaming WebSocket, within the setup deadline; a timeout names its step. */
  private async setUp(log: Logger): Promise<WebSocket> {
    const { client, deviceId, service } = this.opts;
    const started = Date.now();
    const deadlineMs = this.opts.setupTimeoutMs ?? SETUP_TIMEOUT_MS;
    const abort = new AbortController();
    let step = 'the hub did not answer the stream request';
    const timer = setTimeout(() => abort.abort(), deadlineMs);
    const timedOut = new Promise<never>((_, reject) =>
      abort.signal.addEventListener('abort', () => reject(new DevstreamsError('EHUB_UNREACHABLE', `${step} within ${Math.round(deadlineMs / 1000)} s`)), { once: true }),
    );
    timedOut.catch(() => undefined);
    try {
      const accepted = await Promise.race([client.requestStream(deviceId, service, abort.signal), timedOut]);
      step = 'the streaming WebSocket did not open';
      const opening = client.openStream(accepted);
      // Too late: a WebSocket that opens after the deadline is closed again.
      opening.then((late) => abort.signal.aborted && closeStreamSocket(late, CLOSE.NORMAL, ''), () => undefined);
      const ws = await Promise.race([opening, timedOut]);
      log.info({ setup_ms: Date.now() - started, open: this.sockets.size }, 'stream open');
      return ws;
    } finally {
      clearTimeout(timer);
    }
  }

  describe(): string {
    const { host, port } = this.address;
    return formatHostPort(host, port);
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    // Streams still open did not end at both ends: their clients see a reset, never a FIN.
    this.gate.clear();
    for (const s of this.sockets) resetLocal(s);
    await closed;
    this.opts.client.close();
  }
}
