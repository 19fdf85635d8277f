import { createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { formatHostPort } from '../core/address';
import { formatBytes } from '../core/format';
import type { Logger } from '../core/log';
import { resetLocal, startTunnel } from '../core/tunnel';
import { closeStreamSocket } from '../core/ws-sink';
import { CLOSE, isDevstreamsError } from '../wire';
import { HubClient } from './hub-client';

export interface ConnectOptions {
  client: HubClient;
  deviceId: string;
  service: string;
  listen: { host: string; port: number };
  /** Streaming WebSocket ping interval (liveness: a hub silent for two of these is gone). */
  pingIntervalMs?: number;
  log: Logger;
}

/**
 * `devstreams connect`: a local port where every accepted TCP connection becomes a new stream to one
 * device service, the way `ssh -L` feels. A failed stream closes that one connection with a message
 * in the log; the port keeps listening.
 */
export class Connect {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private connections = 0;

  constructor(private readonly opts: ConnectOptions) {}

  get address(): { host: string; port: number } {
    const a = this.server?.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  async start(): Promise<void> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => this.onConnection(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.listen.port, this.opts.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
  }

  private async onConnection(socket: Socket): Promise<void> {
    const { client, deviceId, service } = this.opts;
    const n = ++this.connections;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined); // handled by the tunnel or by the destroy below
    const log = this.opts.log.child({ conn: n, device: deviceId, svc: service });
    const started = Date.now();
    try {
      const accepted = await client.requestStream(deviceId, service);
      const ws = await client.openStream(accepted);
      if (socket.destroyed) {
        closeStreamSocket(ws, CLOSE.NORMAL, '');
        return;
      }
      log.info({ setup_ms: Date.now() - started, open: this.sockets.size }, 'stream open');
      const r = await startTunnel(socket, ws, this.opts.pingIntervalMs ? { pingIntervalMs: this.opts.pingIntervalMs } : {}).done;
      // Only an end both sides agreed on (1000) reached the client as a FIN; the rest (1001 included) was a reset.
      const why = r.closeReason || (r.error ? ((r.error as NodeJS.ErrnoException).code ?? r.error.message) : r.closeCode === 1006 ? 'connection to the hub lost' : '');
      const msg = `stream ${r.clean ? 'closed' : 'reset'}${why ? `: ${why}` : ''} (${r.closeCode}), sent ${formatBytes(r.bytesOut)} received ${formatBytes(r.bytesIn)}`;
      log[r.clean ? 'info' : 'warn']({ close_code: r.closeCode, bytes_out: r.bytesOut, bytes_in: r.bytesIn }, msg);
    } catch (err) {
      log.error({ code: isDevstreamsError(err) ? err.code : undefined }, `stream to ${deviceId}/${service} failed: ${(err as Error).message}`);
      resetLocal(socket); // the client must not take a stream that never opened for an empty one
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
    for (const s of this.sockets) resetLocal(s);
    await closed;
    this.opts.client.close();
  }
}
