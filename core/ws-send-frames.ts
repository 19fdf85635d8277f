import type { Duplex } from 'node:stream';
import type { OnReadOpts } from 'node:net';
import { WebSocket } from 'ws';
import { MAX_FRAME_BYTES } from '../wire';
import { OPCODE } from './ws-frames';

/**
 * The parts of a `ws` 8 WebSocket that writing binary frames past its Sender needs. Not public API:
 * `sendBinaryCopy` checks them and leaves the frame to `ws.send` when they are not as expected
 * (test/ws-send-frames.test.ts pins that the fast path is taken with the `ws` we ship).
 */
interface WsSendInternals {
  _socket?: Duplex;
  _isServer?: boolean;
  _sender?: { _state: number; _queue: unknown[]; _firstFragment: boolean };
}

/** The Sender's state when nothing waits in its queue (ws/lib/sender.js DEFAULT). */
const SENDER_IDLE = 0;
/** Room for the longest header: 2 bytes, an 8-byte length, a 4-byte masking key. */
const HEADER_ROOM_BYTES = 14;
/** One read of a local socket: at most one frame's payload (IoT Hub's 64 KiB). */
export const LOCAL_READ_BYTES = MAX_FRAME_BYTES;
/** Reads up to this size get a frame of their own size (Node's 8 KiB slab) instead of a 64 KiB one. */
const SMALL_READ_BYTES = 4096;
/** Frame buffers kept for reuse once written, for the whole process (8 x 64 KiB). */
const FRAMES_KEPT = 8;
const FRAME_BUFFER_BYTES = HEADER_ROOM_BYTES + LOCAL_READ_BYTES;

const keptFrames: Buffer[] = [];
/** Every local socket read this way reads into this one buffer; each read is copied out before its callback returns. */
let sharedReadBuffer: Buffer | undefined;

/**
 * Writes `length` bytes of `src` to an open WebSocket as one binary frame, header and payload in ONE
 * buffer written straight to its socket: `ws`'s Sender would write them as two (cork, writev), and
 * Node's TLS socket copies those into one buffer again before encrypting; reading the local socket
 * into a fresh 64 KiB buffer for every read was the rest of the cost (docs/benchmarks.md: the agent's
 * send path 1.52 -> 1.10 s/GiB). `src` is copied before this returns, into a frame buffer reused
 * only once the socket called back (TLS may hold it while it cannot encrypt at once).
 *
 * Only when the Sender has nothing queued and no message half sent, so the frame keeps its place
 * among `ws`'s own (close, ping, pong, text); clients mask with the zero key, as `dialStream` has
 * `ws` do. Returns the bytes the frame holds until `written` is called (the caller's backpressure),
 * or -1 and sends nothing when it cannot go around `ws` (the caller then uses `ws.send`).
 */
export function sendBinaryCopy(ws: WebSocket, src: Buffer, length: number, written: () => void): number {
  const { _socket: socket, _sender: sender, _isServer: isServer } = ws as unknown as WsSendInternals;
  if (!socket || !sender || typeof isServer !== 'boolean' || ws.readyState !== WebSocket.OPEN || ws.extensions !== '') return -1;
  if (sender._state !== SENDER_IDLE || sender._queue.length !== 0 || !sender._firstFragment || length > LOCAL_READ_BYTES) return -1;
  const small = length <= SMALL_READ_BYTES;
  const frame = small ? Buffer.allocUnsafe(HEADER_ROOM_BYTES + length) : (keptFrames.pop() ?? Buffer.allocUnsafeSlow(FRAME_BUFFER_BYTES));
  src.copy(frame, HEADER_ROOM_BYTES, 0, length);
  const start = writeHeader(frame, length, !isServer);
  socket.cork();
  socket.write(frame.subarray(start, HEADER_ROOM_BYTES + length), () => {
    if (!small && keptFrames.length < FRAMES_KEPT) keptFrames.push(frame);
    written();
  });
  socket.uncork();
  return small ? length : FRAME_BUFFER_BYTES;
}

/** A final binary frame's header, written to end where the payload starts; returns where it starts. */
function writeHeader(frame: Buffer, length: number, zeroMask: boolean): number {
  const maskBytes = zeroMask ? 4 : 0;
  const lengthBytes = length < 126 ? 0 : length < 0x10000 ? 2 : 8;
  const start = HEADER_ROOM_BYTES - maskBytes - lengthBytes - 2;
  frame[start] = 0x80 | OPCODE.BINARY;
  frame[start + 1] = (zeroMask ? 0x80 : 0) | (lengthBytes === 0 ? length : lengthBytes === 2 ? 126 : 127);
  if (lengthBytes === 2) frame.writeUInt16BE(length, start + 2);
  if (lengthBytes === 8) {
    frame.writeUInt32BE(0, start + 2); // length < 2^32: the high half
    frame.writeUInt32BE(length, start + 6);
  }
  if (zeroMask) frame.writeUInt32BE(0, HEADER_ROOM_BYTES - 4);
  return start;
}

/**
 * A local socket read with `onread` into one buffer shared by every such socket, each read handed to
 * whoever `attach`es (the tunnel), which copies what it keeps before returning (`sendBinaryCopy`).
 * No 64 KiB buffer is allocated per read and none is held by an idle socket. Pass `onread` to
 * `net.connect` and pause the socket until attached; returning false from the handler pauses it
 * (`socket.resume()` reads again). A read before anyone attached is kept, copied.
 */
export class SharedBufferReads {
  private handler: ((buf: Buffer, length: number) => boolean) | undefined;
  private early: Buffer[] = [];
  readonly onread: OnReadOpts = {
    buffer: (sharedReadBuffer ??= Buffer.allocUnsafeSlow(LOCAL_READ_BYTES)),
    callback: (length: number, buf: Uint8Array): boolean => {
      const b = buf as Buffer;
      if (this.handler) return this.handler(b, length);
      this.early.push(Buffer.from(b.subarray(0, length)));
      return false;
    },
  };

  attach(handler: (buf: Buffer, length: number) => boolean): void {
    this.handler = handler;
    for (const b of this.early.splice(0)) handler(b, b.length);
  }
}
