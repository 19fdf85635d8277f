import type { Duplex, Writable } from 'node:stream';
import { WebSocket } from 'ws';
import { FrameReader, OPCODE, frameHeader, type FrameHandler } from './ws-frames';

/**
 * The parts of a `ws` 8 WebSocket that taking over its reading needs. Not public API: the take-over
 * checks them and leaves `ws` reading on its own if they are not as expected (test/ws-pieces.test.ts
 * pins that it happens with the `ws` we ship).
 */
interface WsInternals {
  _socket?: Duplex;
  _receiver?: Writable & {
    _isServer: boolean;
    _maxPayload: number;
    _bufferedBytes: number;
    _state: number;
    _fragmented: number;
  };
}

/** The Receiver's state between frames (ws/lib/receiver.js GET_INFO). */
const RECEIVER_BETWEEN_FRAMES = 0;

/** A peer broke the WebSocket protocol (masking, opcode, frame size): the socket was closed with `closeCode`. */
export class WsProtocolError extends Error {
  readonly code = 'EWS_PROTOCOL';
  constructor(
    readonly closeCode: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Binary payload of an open `ws` WebSocket handed to `onPiece` in the pieces it arrives in (a view
 * of the socket's chunk, never copied), instead of `ws` gathering each frame and message into one
 * buffer first (a copy of every byte, and 64 KiB buffers for the GC). Everything else (text frames,
 * close, ping, pong) goes on to `ws`'s own receiver as whole frames, so the close handshake, UTF-8
 * checks, automatic pongs and 'message' / 'ping' / 'pong' / 'close' events stay `ws`'s. Pausing the
 * WebSocket pauses the socket, so backpressure works as before. A frame a client must not accept (a
 * masked one from a server, a reserved opcode or bit, one over `maxPayload`) closes the WebSocket with
 * 1002 or 1009 and emits a WsProtocolError, as `ws` would.
 *
 * Take over only a WebSocket paused since 'open' (or not yet read from). Returns false, and changes
 * nothing, when `ws` is not in a state this can take over (then binary arrives as 'message').
 */
export function receivePieces(ws: WebSocket, onPiece: (chunk: Buffer) => void): boolean {
  const { _socket: socket, _receiver: receiver } = ws as unknown as WsInternals;
  if (!socket || !receiver || ws.readyState !== WebSocket.OPEN || ws.extensions !== '') return false;
  const taken = socket.listeners('data');
  const idle = receiver._bufferedBytes === 0 && receiver._state === RECEIVER_BETWEEN_FRAMES && receiver._fragmented === 0;
  if (taken.length !== 1 || !idle || typeof receiver._maxPayload !== 'number') return false;
  const reader = new PieceReader(ws, socket, receiver, onPiece);
  socket.off('data', taken[0] as (chunk: Buffer) => void);
  reader.start();
  return true;
}

class PieceReader implements FrameHandler {
  private readonly reader: FrameReader;
  /** The message being received is binary (a continuation belongs to the message's first frame). */
  private inBinary = false;
  private stopped = false;
  private readonly socketOnData = (chunk: Buffer): void => {
    if (!this.stopped) this.reader.write(chunk);
  };
  /** What arrived but was not read when the socket closed (paused for backpressure) is still read, as `ws` does. */
  private readonly socketOnClose = (): void => {
    if (!this.stopped && this.socket.readableLength > 0) {
      const rest = this.socket.read(this.socket.readableLength) as Buffer | null;
      if (rest) this.socketOnData(rest);
    }
    this.stop();
  };

  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
    private readonly receiver: NonNullable<WsInternals['_receiver']>,
    private readonly onPiece: (chunk: Buffer) => void,
  ) {
    const maxFrameBytes = receiver._maxPayload > 0 ? receiver._maxPayload : Number.MAX_SAFE_INTEGER;
    this.reader = new FrameReader(this, maxFrameBytes, receiver._isServer ? 'required' : 'forbidden');
  }

  start(): void {
    this.socket.on('data', this.socketOnData);
    // Before ws's own 'close' listener, which would hand unread bytes to its receiver directly.
    this.socket.prependListener('close', this.socketOnClose);
    this.ws.once('error', () => this.stop()); // ws's receiver refused something (bad UTF-8, oversize text)
  }

  frameStart(opcode: number, fin: boolean, length: number): void {
    if (opcode !== OPCODE.CONTINUATION) this.inBinary = opcode === OPCODE.BINARY;
    if (!this.inBinary) this.toReceiver(frameHeader(opcode, fin, length, this.receiver._isServer));
  }

  payload(chunk: Buffer): void {
    if (this.stopped) return;
    if (!this.inBinary) this.toReceiver(chunk);
    else if (chunk.length > 0) this.onPiece(chunk);
  }

  control(opcode: number, payload: Buffer): void {
    this.toReceiver(Buffer.concat([frameHeader(opcode, true, payload.length, this.receiver._isServer), payload]));
    // ws answers the close and lets the socket drain; nothing after a close frame is read.
    if (opcode === OPCODE.CLOSE) this.stop();
  }

  violation(code: number, why: string): void {
    if (this.stopped) return;
    this.stop();
    this.ws.close(code, why);
    this.ws.emit('error', new WsProtocolError(code, why));
  }

  /** As ws's own socket listener: a receiver that is full pauses the socket until it drains. */
  private toReceiver(data: Buffer): void {
    if (this.stopped) return;
    if (!this.receiver.writable) return this.stop();
    if (!this.receiver.write(data)) this.socket.pause();
  }

  /** Reads no more; the socket keeps flowing so ws sees its end. */
  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.socket.off('data', this.socketOnData);
    this.socket.off('close', this.socketOnClose);
    process.nextTick(() => this.socket.resume());
  }
}
