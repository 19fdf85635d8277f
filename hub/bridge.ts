import { WebSocket, type RawData } from 'ws';
import { CLOSE } from '../wire';
import { WebSocketSink, closeStreamSocket, forwardableCloseCode } from '../core/ws-sink';
import type { StreamSide } from './stream-tokens';

/** What one side may send before the other side arrives; past it, that side is paused (TCP backpressure). */
export const EARLY_BUFFER_BYTES = 256 * 1024;

/**
 * One side's WebSocket at the streaming endpoint. Until it is paired it keeps what arrives (bounded)
 * and remembers how it closed; once paired it forwards frames to the other leg with backpressure and
 * hands its close (code and reason) on, so the other side learns why the stream ended.
 */
export class Leg {
  readonly sink: WebSocketSink;
  /** Bytes received from this side. */
  bytes = 0;
  closed?: { code: number; reason: string };
  private peer?: Leg;
  private early: Array<[Buffer, boolean]> = [];
  private earlyBytes = 0;
  private waitingForPeerDrain = false;
  private readonly closedPromise: Promise<void>;

  constructor(
    readonly ws: WebSocket,
    readonly side: StreamSide,
  ) {
    this.sink = new WebSocketSink(ws);
    let resolveClosed!: () => void;
    this.closedPromise = new Promise((r) => (resolveClosed = r));
    ws.on('message', (data: RawData, isBinary: boolean) => this.onMessage(data as Buffer, isBinary));
    ws.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() };
      this.peer?.closeWith(code, this.closed.reason, this.side);
      resolveClosed();
    });
    ws.on('error', () => {
      // 'close' follows; the code (1006) tells the other side.
    });
  }

  get done(): Promise<void> {
    return this.closedPromise;
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) this.bytes += data.length;
    const peer = this.peer;
    if (!peer) {
      this.early.push([data, isBinary]);
      this.earlyBytes += data.length;
      if (this.earlyBytes >= EARLY_BUFFER_BYTES) this.ws.pause();
      return;
    }
    if (!peer.sink.write(data, isBinary)) this.waitForPeerDrain(peer);
  }

  private waitForPeerDrain(peer: Leg): void {
    if (this.waitingForPeerDrain) return;
    this.waitingForPeerDrain = true;
    this.ws.pause();
    peer.sink.once('drain', () => {
      this.waitingForPeerDrain = false;
      if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CLOSING) this.ws.resume();
    });
  }

  pairWith(peer: Leg): void {
    this.peer = peer;
    const early = this.early;
    this.early = [];
    this.earlyBytes = 0;
    let full = false;
    for (const [data, isBinary] of early) full = !peer.sink.write(data, isBinary) || full;
    if (full) this.waitForPeerDrain(peer);
    else if (this.ws.isPaused) this.ws.resume();
    if (this.closed) peer.closeWith(this.closed.code, this.closed.reason, this.side);
  }

  /** Closes this side because the other side (`from`) closed with `code`. */
  closeWith(code: number, reason: string, from: StreamSide): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const lost = code === 1006 ? `${from} connection lost` : reason;
    closeStreamSocket(this.ws, forwardableCloseCode(code, CLOSE.PEER_LOST), lost);
  }

  /** What still arrives after the close goes to a peer that is gone, where the sink drops it. */
  close(code: number, reason: string): void {
    closeStreamSocket(this.ws, code, reason);
  }
}
