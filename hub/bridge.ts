import { WebSocket, type RawData } from 'ws';
import { CLOSE, encodeHello } from '../wire';
import { WebSocketSink, closeStreamSocket, forwardableCloseCode } from '../core/ws-sink';
import type { StreamSide } from './stream-tokens';

/** What one side may send before the other side arrives; past it, that side is paused (TCP backpressure). */
export const EARLY_BUFFER_BYTES = 256 * 1024;

/**
 * One side's WebSocket at the streaming endpoint. Until it is paired it keeps what arrives (bounded)
 * and remembers how it closed; once paired it forwards frames to the other leg with backpressure and
 * hands its close (code and reason) on, so the other side learns why the stream ended. A side that
 * announced extensions (`x-devstreams-ext`) first gets a hello with its peer's; text frames reach
 * only a side that announced (an IoT Hub SDK peer would take them for payload).
 */
export class Leg {
  readonly sink: WebSocketSink;
  /** Bytes received from this side. */
  bytes = 0;
  /** Text frames not forwarded because the other side did not announce extensions. */
  textDropped = 0;
  closed?: { code: number; reason: string };
  private peer?: Leg;
  private early: Array<[Buffer, boolean]> = [];
  private earlyBytes = 0;
  private waitingForPeerDrain = false;
  private readonly closedPromise: Promise<void>;

  constructor(
    readonly ws: WebSocket,
    readonly side: StreamSide,
    /** The extensions this side announced on its upgrade; `null` for a plain (IoT Hub SDK) side. */
    readonly announced: readonly string[] | null = null,
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
    if (!this.forward(peer, data, isBinary)) this.waitForPeerDrain(peer);
  }

  /** Hands one frame to the other side; false when it should wait for the other side's drain. */
  private forward(peer: Leg, data: Buffer, isBinary: boolean): boolean {
    if (isBinary) return peer.sink.write(data, true);
    if (peer.announced) return peer.sink.write(data, false);
    this.textDropped++;
    return true;
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

  /** Tells this side what the other announced, before any of the other's frames (only if this side announced). */
  helloFrom(peer: Leg): void {
    if (this.announced && this.ws.readyState === WebSocket.OPEN) this.sink.write(Buffer.from(encodeHello(peer.announced ?? [])), false);
  }

  pairWith(peer: Leg): void {
    this.peer = peer;
    const early = this.early;
    this.early = [];
    this.earlyBytes = 0;
    let full = false;
    for (const [data, isBinary] of early) full = !this.forward(peer, data, isBinary) || full;
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
