import { connect as netConnect, type Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { formatHostPort } from '../core/address';
import { formatBytes } from '../core/format';
import type { Logger } from '../core/log';
import { startTunnel, type Tunnel } from '../core/tunnel';
import { CLOSE, type StreamRequest } from '../wire';
import { STREAM_CONNECT_TIMEOUT_MS, dialStream, type DialOptions } from '../core/stream-dial';
import { closeStreamSocket } from '../core/ws-sink';
import { SharedBufferReads } from '../core/ws-send-frames';
import { describeFdExhaustion, isFdExhaustion } from '../core/fd-limit';
import type { TcpServiceConfig } from './config';
import type { AuditRecord } from './audit';

export function waitOpen(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      ws.pause(); // until the tunnel takes it, so no frame is lost
      resolve();
    });
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`streaming endpoint answered HTTP ${res.statusCode}`)));
  });
}

/** A target connected with its reads into a shared buffer, paused until the tunnel takes them (core/ws-send-frames.ts). */
function connectTarget(host: string, port: number, reads: SharedBufferReads): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host, port, allowHalfOpen: true, noDelay: true, onread: reads.onread });
    socket.pause();
    const timer = setTimeout(() => socket.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' })), STREAM_CONNECT_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * One accepted stream to a TCP service: dial the streaming URL and the local target at once, join
 * them, and report what happened. If the target cannot be reached the stream is closed with 4001 and
 * a reason the service side shows.
 */
export interface SessionContext {
  caPem?: Buffer;
  /** Proxy and TLS verification for the streaming WebSocket. */
  dial?: DialOptions;
  log: Logger;
  /** Any byte in either direction (idle timeout). */
  onActivity?: () => void;
  /** Streaming WebSocket ping interval (liveness: a hub silent for two of these is gone). */
  pingIntervalMs?: number;
}

export class TcpStreamSession {
  private tunnel?: Tunnel;
  private abortedWith?: { code: number; reason: string };

  constructor(
    private readonly req: StreamRequest,
    private readonly service: TcpServiceConfig,
    private readonly ctx: SessionContext,
  ) {}

  get targetName(): string {
    return formatHostPort(this.service.host, this.service.port);
  }

  async run(): Promise<Omit<AuditRecord, 'request_id' | 'service' | 'target'>> {
    const started = Date.now();
    const ws = dialStream(this.req.url, this.req.authToken, this.ctx.caPem, this.ctx.dial);
    ws.on('error', () => undefined); // reported through the promises below
    const reads = new SharedBufferReads();
    const [wsResult, targetResult] = await Promise.allSettled([waitOpen(ws), connectTarget(this.service.host, this.service.port, reads)]);
    const elapsed = () => Date.now() - started;
    if (wsResult.status === 'rejected') {
      if (targetResult.status === 'fulfilled') targetResult.value.destroy();
      ws.terminate();
      const err = wsResult.reason as Error;
      const reason = `streaming endpoint: ${isFdExhaustion(err) ? describeFdExhaustion(err) : err.message}`;
      this.ctx.log.warn({ err: (err as NodeJS.ErrnoException).code }, `stream failed: cannot dial the ${reason}`);
      return { outcome: 'stream-failed', bytes_to_target: 0, bytes_from_target: 0, duration_ms: elapsed(), reason };
    }
    if (targetResult.status === 'rejected') {
      const err = targetResult.reason as NodeJS.ErrnoException;
      const reason = `target ${this.targetName} ${err.code === 'ECONNREFUSED' ? 'refused the connection' : isFdExhaustion(err) ? `unreachable: ${describeFdExhaustion(err)}` : `unreachable (${err.code ?? err.message})`}`;
      this.ctx.log.warn({ err: err.code }, `stream failed: ${reason}`);
      closeStreamSocket(ws, CLOSE.TARGET_UNAVAILABLE, reason);
      return { outcome: 'target-unavailable', bytes_to_target: 0, bytes_from_target: 0, duration_ms: elapsed(), reason };
    }
    const target = targetResult.value;
    if (this.abortedWith) {
      target.destroy();
      closeStreamSocket(ws, this.abortedWith.code, this.abortedWith.reason);
      return { outcome: 'closed', bytes_to_target: 0, bytes_from_target: 0, duration_ms: elapsed(), reason: this.abortedWith.reason };
    }
    this.ctx.log.debug({ target: this.targetName }, 'stream open');
    this.tunnel = startTunnel(target, ws, {
      localReads: reads,
      ...(this.ctx.onActivity ? { onActivity: this.ctx.onActivity } : {}),
      ...(this.ctx.pingIntervalMs ? { pingIntervalMs: this.ctx.pingIntervalMs } : {}),
    });
    const r = await this.tunnel.done;
    const reason = r.error ? `error: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}` : `${r.endedBy} closed${r.closeReason ? `: ${r.closeReason}` : ''} (${r.closeCode})`;
    // Anything but an end both sides agreed on reset the target: a warning, with what was moved.
    this.ctx.log[r.clean ? 'info' : 'warn'](
      { bytes_to_target: r.bytesIn, bytes_from_target: r.bytesOut, close_code: r.closeCode },
      `stream closed: ${reason}, sent ${formatBytes(r.bytesOut)} received ${formatBytes(r.bytesIn)}`,
    );
    return { outcome: 'closed', bytes_to_target: r.bytesIn, bytes_from_target: r.bytesOut, duration_ms: elapsed(), reason };
  }

  /** Ends the stream from the device side (shutdown, limits). */
  close(code: number, reason: string): void {
    if (this.tunnel) this.tunnel.close(code, reason);
    else this.abortedWith = { code, reason };
  }
}
