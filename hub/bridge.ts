import type { Duplex } from 'node:stream';
import { CLOSE, MAX_FRAME_BYTES, closeReason, encodeHello } from '../wire';
import { FrameReader, OPCODE, closePayload, frameHeader, parseClosePayload, type FrameHandler } from '../core/ws-frames';
import { WS_HIGH_WATER_BYTES, forwardableCloseCode } from '../core/ws-sink';
import { LivenessCheck, WS_PING_INTERVAL_MS } from '../core/ws-heartbeat';
import type { StreamSide } from './stream-tokens';

/** What one side may send before the other side arrives; past it, that side is paused (TCP backpressure). */
export const EARLY_BUFFER_BYTES = 256 * 1024;
/** How long a side has to answer our close frame before its connection is dropped (as `ws`). */
export const CLOSE_TIMEOUT_MS = 30_000;

/** One piece of what a side sent before its partner came: a frame header or payload bytes. */
interface EarlyPiece {
  text: boolean;
  /** A frame header, with the payload length that follows it; otherwise payload. */
  header?: number;
  data: Buffer;
}

/**
 * One side's WebSocket at the streaming endpoint, on its raw socket. Stream bytes are relayed without
 * being gathered or copied: binary payload goes on in the pieces it arrives in, each piece a whole
 * frame of its own (a new header, the same bytes), so the other side is never left inside a frame
 * whose sender may vanish, and a close with its reason can always follow. Text frames (control
 * messages, small) are relayed as they came, header rewritten (unmasked). Close, ping and pong are
 * handled here; until the other side arrives what comes is kept (bounded).
 *
 * A side that announced extensions (`x-devstreams-ext`) first gets a hello with its peer's; text
 * frames reach only a side that announced (an IoT Hub SDK peer would take them for payload). A side's
 * close (code and reason) is handed on, so the other side learns why the stream ended.
 */
export class Leg implements FrameHandler {
  /** Binary payload bytes received from this side. */
  bytes = 0;
  /** Text frames not forwarded because the other side did not announce extensions. */
  textDropped = 0;
  closed?: { code: number; reason: string };
  readonly done: Promise<void>;
  private peer?: Leg;
  private readonly reader: FrameReader;
  private early: EarlyPiece[] = [];
  private earlyBytes = 0;
  private waitingForPeerDrain = false;
  /** The message being received is text (a continuation belongs to the message's first frame). */
  private inText = false;
  /** The frame being received is not forwarded (text to a side that did not announce). */
  private dropping = false;
  // Towards this side.
  private closeSent = false;
  private closeReceived = false;
  /** Payload bytes of a relayed frame still to come: nothing else may be written to this side before them. */
  private midFrame = 0;
  private held: Buffer[] = [];
  private readonly liveness: LivenessCheck;
  private readonly timer: NodeJS.Timeout;
  private closeTimer?: NodeJS.Timeout;

  constructor(
    private readonly socket: Duplex,
    readonly side: StreamSide,
    /** The extensions this side announced on its upgrade; `null` for a plain (IoT Hub SDK) side. */
    readonly announced: readonly string[] | null = null,
    pingIntervalMs = WS_PING_INTERVAL_MS,
  ) {
    this.reader = new FrameReader(this, MAX_FRAME_BYTES, 'required');
    this.done = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined); // 'close' follows: 1006 for the other side
    socket.once('close', () => this.onSocketClose());
    this.liveness = new LivenessCheck(pingIntervalMs);
    this.timer = this.heartbeat();
  }

  private onData(chunk: Buffer): void {
    if (this.closeReceived) return;
    const peer = this.peer;
    // One write per chunk for the other side: header and payload go out in the same TLS records.
    peer?.socket.cork();
    this.reader.write(chunk);
    if (peer) process.nextTick(() => peer.socket.uncork());
  }

  // --- frames from this side (FrameHandler)

  frameStart(opcode: number, fin: boolean, length: number): void {
    this.liveness.heard();
    if (opcode !== OPCODE.CONTINUATION) this.inText = opcode === OPCODE.TEXT;
    if (!this.inText) this.bytes += length;
    const header = frameHeader(opcode, fin, length);
    const peer = this.peer;
    if (!peer) return this.keepEarly({ text: this.inText, header: length, data: header });
    this.dropping = this.inText && !peer.announced;
    if (this.dropping) {
      this.textDropped++;
      return;
    }
    // Binary: each payload piece becomes its own frame (relayPiece); no header of this one goes out.
    if (this.inText && !peer.relayHeader(header, length)) this.waitForPeerDrain(peer);
  }

  payload(chunk: Buffer): void {
    const peer = this.peer;
    if (!peer) return this.keepEarly({ text: this.inText, data: chunk });
    if (this.dropping || chunk.length === 0) return;
    if (!(this.inText ? peer.relayPayload(chunk) : peer.relayPiece(chunk))) this.waitForPeerDrain(peer);
  }

  control(opcode: number, payload: Buffer): void {
    this.liveness.heard();
    if (opcode === OPCODE.PING) return this.sendPong(payload);
    if (opcode !== OPCODE.CLOSE) return; // pong: heard, nothing else
    this.closeReceived = true;
    const { code, reason } = parseClosePayload(payload);
    this.closed ??= { code, reason };
    // Echo the close (the handshake's second half), then the server ends the TCP connection.
    if (!this.closeSent) this.sendClose(code === 1005 ? undefined : code, '');
    this.socket.end();
    this.armCloseTimer();
    this.peer?.closeWith(code, reason, this.side);
  }

  violation(code: number, why: string): void {
    this.closed ??= { code, reason: why };
    this.closeReceived = true;
    this.sendClose(code, why);
    this.socket.end();
    this.armCloseTimer();
    this.peer?.closeWith(CLOSE.PEER_LOST, `${this.side} broke the WebSocket protocol`, this.side);
  }

  private keepEarly(piece: EarlyPiece): void {
    if (this.closeSent) return; // closed before its partner came (handshake timeout, hub stop): nowhere to go
    this.early.push(piece);
    this.earlyBytes += piece.data.length;
    if (this.earlyBytes >= EARLY_BUFFER_BYTES) this.socket.pause();
  }

  private waitForPeerDrain(peer: Leg): void {
    if (this.waitingForPeerDrain) return;
    this.waitingForPeerDrain = true;
    this.socket.pause();
    peer.socket.once('drain', () => {
      this.waitingForPeerDrain = false;
      if (!this.socket.destroyed) this.socket.resume();
    });
  }

  // --- towards this side

  private writable(): boolean {
    return !this.closeSent && !this.socket.destroyed && this.socket.writable;
  }

  /** Starts a relayed frame; false when this side's queue is over the high-water mark. */
  private relayHeader(header: Buffer, length: number): boolean {
    if (!this.writable()) return true; // closing: the frame has nowhere to go
    this.socket.write(header);
    this.midFrame = length;
    if (length === 0) this.flushHeld();
    return this.socket.writableLength < WS_HIGH_WATER_BYTES;
  }

  private relayPayload(chunk: Buffer): boolean {
    if (this.midFrame === 0 || this.socket.destroyed) return true; // its header was not sent
    this.socket.write(chunk);
    this.midFrame -= chunk.length;
    if (this.midFrame === 0) this.flushHeld();
    return this.socket.writableLength < WS_HIGH_WATER_BYTES;
  }

  /** A piece of binary payload as a whole frame: the bytes as they came, under a header of ours. */
  private relayPiece(chunk: Buffer): boolean {
    if (!this.writable()) return true; // closing: the bytes have nowhere to go
    this.socket.write(frameHeader(OPCODE.BINARY, true, chunk.length));
    this.socket.write(chunk);
    return this.socket.writableLength < WS_HIGH_WATER_BYTES;
  }

  /** A whole frame of ours (pong, ping, close, hello); held back while a relayed text frame is half sent. */
  private sendWhole(opcode: number, payload: Buffer): void {
    if (this.closeSent || this.socket.destroyed || !this.socket.writable) return;
    const frame = Buffer.concat([frameHeader(opcode, true, payload.length), payload]);
    if (this.midFrame > 0) this.held.push(frame);
    else this.socket.write(frame);
  }

  /**
   * Answers a ping. A side that pings without reading cannot make us queue answers: only the latest
   * one waits behind a half-sent frame, and none is queued past the high-water mark (RFC 6455 §5.5.3
   * lets a pong answer only the most recent ping).
   */
  private sendPong(payload: Buffer): void {
    if (this.socket.writableLength >= WS_HIGH_WATER_BYTES) return;
    if (this.midFrame > 0) this.held = this.held.filter((f) => (f[0]! & 0x0f) !== OPCODE.PONG);
    this.sendWhole(OPCODE.PONG, payload);
  }

  private flushHeld(): void {
    const held = this.held;
    this.held = [];
    for (const f of held) this.socket.write(f);
  }

  private sendClose(code: number | undefined, reason: string): void {
    if (this.closeSent) return;
    if (this.midFrame > 0) {
      // A text frame is half written and its sender is gone: the only honest end is to drop the connection.
      this.socket.destroy();
      return;
    }
    this.sendWhole(OPCODE.CLOSE, code === undefined ? Buffer.alloc(0) : closePayload(code, closeReason(reason)));
    this.closeSent = true;
  }

  private armCloseTimer(): void {
    if (this.closeTimer) return;
    this.closeTimer = setTimeout(() => this.socket.destroy(), CLOSE_TIMEOUT_MS);
    this.closeTimer.unref();
  }

  /** Tells this side what the other announced, before any of the other's frames (only if this side announced). */
  helloFrom(peer: Leg): void {
    if (this.announced) this.sendWhole(OPCODE.TEXT, Buffer.from(encodeHello(peer.announced ?? [])));
  }

  pairWith(peer: Leg): void {
    this.peer = peer;
    const early = this.early;
    this.early = [];
    this.earlyBytes = 0;
    let full = false;
    let dropping = false;
    for (const piece of early) {
      if (piece.header !== undefined) {
        dropping = piece.text && !peer.announced;
        if (dropping) this.textDropped++;
        else if (piece.text) full = !peer.relayHeader(piece.data, piece.header) || full;
      } else if (!dropping && piece.data.length > 0) {
        full = !(piece.text ? peer.relayPayload(piece.data) : peer.relayPiece(piece.data)) || full;
      }
    }
    // A frame still arriving continues where the early part left it.
    this.dropping = dropping;
    if (full) this.waitForPeerDrain(peer);
    else if (!this.closeReceived) this.socket.resume();
    if (this.closed) peer.closeWith(this.closed.code, this.closed.reason, this.side);
  }

  /** Closes this side because the other side (`from`) closed with `code`. */
  closeWith(code: number, reason: string, from: StreamSide): void {
    if (this.closeSent || this.socket.destroyed) return;
    const lost = code === 1006 ? `${from} connection lost` : reason;
    this.close(forwardableCloseCode(code, CLOSE.PEER_LOST), lost);
  }

  /**
   * Sends this side a close and keeps reading until its answer (a side paused for backpressure would
   * not read it); what still arrives goes to a peer that is gone, and is dropped.
   */
  close(code: number, reason: string): void {
    if (this.closeSent || this.socket.destroyed) return;
    this.sendClose(code, reason);
    this.armCloseTimer();
    if (!this.closeReceived) this.socket.resume();
  }

  /** Drops the connection at once (hub stop, after the close deadline). */
  destroy(): void {
    this.socket.destroy();
  }

  private onSocketClose(): void {
    clearInterval(this.timer);
    clearTimeout(this.closeTimer);
    this.closed ??= { code: 1006, reason: '' };
    this.peer?.closeWith(this.closed.code, this.closed.reason, this.side);
  }

  /**
   * Pings this side every interval and drops it once nothing came from it for WS_SILENT_INTERVALS
   * (as core/ws-heartbeat.ts does for `ws` sockets): a side that vanished without closing ends the
   * stream for the other. Not judged while we are not reading it (backpressure).
   */
  private heartbeat(): NodeJS.Timeout {
    return this.liveness.start(() => {
      if (this.closeSent || this.closeReceived || this.socket.destroyed) return;
      const verdict = this.liveness.tick(this.socket.isPaused());
      if (verdict === 'dead') this.socket.destroy();
      else if (verdict === 'ping') this.sendWhole(OPCODE.PING, Buffer.alloc(0));
    });
  }
}
