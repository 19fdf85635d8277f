import { EventEmitter } from 'node:events';
import { WebSocket } from 'ws';
import { MAX_FRAME_BYTES, closeReason } from '../wire';
import { sendBinaryCopy } from './ws-send-frames';

/**
 * Bytes a WebSocket may hold queued (sent but not yet handed to the kernel) before its producer is
 * paused. Bounds memory per stream and direction whatever the other side offers.
 */
export const WS_HIGH_WATER_BYTES = 512 * 1024;

/**
 * Writes into a WebSocket with explicit backpressure: `write()` returns false once too much is
 * queued, and 'drain' fires when the queue is half empty again. Binary chunks are cut into frames of
 * at most 64 KiB, IoT Hub's gateway limit.
 */
export class WebSocketSink extends EventEmitter {
  private pendingBytes = 0;
  private needDrain = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly highWaterBytes = WS_HIGH_WATER_BYTES,
  ) {
    super();
  }

  get pending(): number {
    return this.pendingBytes;
  }

  write(chunk: Buffer, binary = true): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return true;
    if (!binary || chunk.length <= MAX_FRAME_BYTES) {
      this.sendFrame(chunk, binary);
    } else {
      for (let off = 0; off < chunk.length; off += MAX_FRAME_BYTES) {
        this.sendFrame(chunk.subarray(off, off + MAX_FRAME_BYTES), true);
      }
    }
    if (this.pendingBytes >= this.highWaterBytes) this.needDrain = true;
    return !this.needDrain;
  }

  /**
   * `length` bytes of `src`, a buffer its owner reuses once this returns (a shared read buffer):
   * copied into one frame written past `ws`'s Sender (core/ws-send-frames.ts) when it can be, else
   * copied and sent as `write` would. Counts what the frame holds, which may be more than `length`.
   */
  writeCopy(src: Buffer, length: number): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return true;
    let held = 0;
    held = sendBinaryCopy(this.ws, src, length, () => this.sent(held));
    if (held < 0) return this.write(Buffer.from(src.subarray(0, length)));
    this.pendingBytes += held;
    if (this.pendingBytes >= this.highWaterBytes) this.needDrain = true;
    return !this.needDrain;
  }

  private sendFrame(frame: Buffer, binary: boolean): void {
    const len = frame.length;
    this.pendingBytes += len;
    this.ws.send(frame, { binary }, () => this.sent(len));
  }

  /** Called once a frame left user space (or the socket failed): either way it is no longer ours. */
  private sent(len: number): void {
    this.pendingBytes -= len;
    if (this.needDrain && this.pendingBytes <= this.highWaterBytes / 2) {
      this.needDrain = false;
      this.emit('drain');
    }
  }
}

/** Close codes a peer may be sent; 1005/1006/1015 are reserved for "no code", "abnormal", "TLS". */
export function forwardableCloseCode(code: number, fallback: number): number {
  if (code === 1005) return 1000;
  if (code === 1000 || code === 1001 || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)) return code;
  return fallback;
}

/**
 * Closes a stream WebSocket and keeps reading until its close handshake ends. A socket paused for
 * backpressure (or never resumed after `open`) would not read the peer's close frame, and ws would
 * hold the connection for its 30 s close timeout. Frames still in flight are read and dropped by
 * whoever listens. The one way every side (agent, hub, service) closes a stream.
 */
export function closeStreamSocket(ws: WebSocket, code: number, reason: string): void {
  if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code, closeReason(reason));
  if (ws.isPaused) ws.resume();
}
