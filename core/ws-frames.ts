/**
 * WebSocket framing (RFC 6455 §5) read as a stream: a frame's payload is handed on in the pieces it
 * arrives in, unmasked in place, never gathered into one buffer. What a relay needs to pass frames
 * on without re-framing them; `ws` gathers every frame (and message) before handing it over.
 */

export const OPCODE = { CONTINUATION: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa } as const;

/** Control frames carry at most this much (RFC 6455 §5.5). */
const MAX_CONTROL_PAYLOAD_BYTES = 125;

export interface FrameHandler {
  /** A data frame begins (opcode 0, 1 or 2); its `length` payload bytes follow through `payload`. */
  frameStart(opcode: number, fin: boolean, length: number): void;
  /** Payload bytes of the current data frame, unmasked; `last` on the frame's final piece. */
  payload(chunk: Buffer, last: boolean): void;
  /** A whole control frame (close, ping, pong). */
  control(opcode: number, payload: Buffer): void;
  /** The peer broke the protocol: close with `code` (1002, 1009) and stop reading. */
  violation(code: number, why: string): void;
}

const enum State {
  HEADER,
  PAYLOAD,
  CONTROL,
  FAILED,
}

/**
 * Whether frames must be masked: `required` for a server reading a client, `forbidden` for a client
 * reading a server (RFC 6455 §5.1), `either` for a reader that only looks.
 */
export type MaskRule = 'required' | 'forbidden' | 'either';

/**
 * Parses frames from a byte stream, checking masks against `maskRule`.
 * Only the header bytes are ever copied (at most 14, when a header straddles two chunks).
 */
export class FrameReader {
  private state = State.HEADER;
  private header = Buffer.alloc(0);
  private remaining = 0;
  private mask: Buffer | undefined;
  private maskOffset = 0;
  private opcode = 0;
  private control: Buffer[] = [];
  /** Inside a fragmented data message (a continuation is expected). */
  private fragmented = false;

  constructor(
    private readonly handler: FrameHandler,
    private readonly maxFrameBytes: number,
    private readonly maskRule: MaskRule,
  ) {}

  write(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length && this.state !== State.FAILED) {
      if (this.state === State.HEADER) {
        off = this.readHeader(chunk, off);
        continue;
      }
      const n = Math.min(this.remaining, chunk.length - off);
      const piece = chunk.subarray(off, off + n);
      off += n;
      this.remaining -= n;
      if (this.mask) this.unmask(piece);
      if (this.state === State.CONTROL) {
        this.control.push(piece);
        if (this.remaining === 0) this.endControl();
      } else {
        this.handler.payload(piece, this.remaining === 0);
        if (this.remaining === 0) this.state = State.HEADER;
      }
    }
  }

  private readHeader(chunk: Buffer, off: number): number {
    // Most headers arrive whole; only a split one is gathered.
    let buf = chunk;
    let start = off;
    if (this.header.length > 0) {
      buf = Buffer.concat([this.header, chunk.subarray(off, off + 14)]);
      start = 0;
    }
    const avail = buf.length - start;
    if (avail < 2) return this.keepHeader(buf, start, chunk, off);
    const b0 = buf[start]!;
    const b1 = buf[start + 1]!;
    const masked = (b1 & 0x80) !== 0;
    const len7 = b1 & 0x7f;
    const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
    if (avail < need) return this.keepHeader(buf, start, chunk, off);
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    let length = len7;
    let p = start + 2;
    if (len7 === 126) {
      length = buf.readUInt16BE(p);
      p += 2;
    } else if (len7 === 127) {
      const high = buf.readUInt32BE(p);
      length = high > 0 ? Number.MAX_SAFE_INTEGER : buf.readUInt32BE(p + 4);
      p += 8;
    }
    this.mask = masked ? Buffer.from(buf.subarray(p, p + 4)) : undefined;
    if (this.mask && this.mask.readUInt32BE(0) === 0) this.mask = undefined; // all-zero key: nothing to undo
    this.maskOffset = 0;
    const consumed = p + (masked ? 4 : 0) - start;
    // Bytes of `chunk` this header used (the gathered part came from earlier chunks).
    const usedFromChunk = consumed - this.header.length;
    this.header = Buffer.alloc(0);
    if (!this.check(b0, opcode, fin, masked, length)) return chunk.length;
    this.opcode = opcode;
    this.remaining = length;
    if (opcode >= OPCODE.CLOSE) {
      this.state = State.CONTROL;
      this.control = [];
      if (length === 0) this.endControl();
    } else {
      this.fragmented = !fin;
      this.state = State.PAYLOAD;
      this.handler.frameStart(opcode, fin, length);
      if (length === 0) {
        this.handler.payload(Buffer.alloc(0), true);
        this.state = State.HEADER;
      }
    }
    return off + usedFromChunk;
  }

  private keepHeader(buf: Buffer, start: number, chunk: Buffer, off: number): number {
    this.header = Buffer.from(buf.subarray(start));
    // Everything of `chunk` from `off` is now in `header` (at most 14 bytes were taken).
    return Math.min(chunk.length, off + 14);
  }

  private check(b0: number, opcode: number, fin: boolean, masked: boolean, length: number): boolean {
    const fail = (code: number, why: string): false => {
      this.state = State.FAILED;
      this.handler.violation(code, why);
      return false;
    };
    if ((b0 & 0x70) !== 0) return fail(1002, 'reserved bits set (no extension was negotiated)');
    if (this.maskRule === 'required' && !masked) return fail(1002, 'unmasked frame from a client');
    if (this.maskRule === 'forbidden' && masked) return fail(1002, 'masked frame from a server');
    if (opcode >= OPCODE.CLOSE) {
      if (opcode > OPCODE.PONG) return fail(1002, `reserved opcode ${opcode}`);
      if (!fin) return fail(1002, 'fragmented control frame');
      if (length > MAX_CONTROL_PAYLOAD_BYTES) return fail(1002, 'control frame too long');
      return true;
    }
    if (opcode > OPCODE.BINARY) return fail(1002, `reserved opcode ${opcode}`);
    if (opcode === OPCODE.CONTINUATION && !this.fragmented) return fail(1002, 'continuation without a message');
    if (opcode !== OPCODE.CONTINUATION && this.fragmented) return fail(1002, 'new message inside a fragmented one');
    if (length > this.maxFrameBytes) return fail(1009, `frame of ${length} bytes over ${this.maxFrameBytes}`);
    return true;
  }

  private unmask(piece: Buffer): void {
    const mask = this.mask!;
    let m = this.maskOffset;
    for (let i = 0; i < piece.length; i++) {
      piece[i]! ^= mask[m]!;
      m = (m + 1) & 3;
    }
    this.maskOffset = m;
  }

  private endControl(): void {
    this.state = State.HEADER;
    this.handler.control(this.opcode, this.control.length === 1 ? this.control[0]! : Buffer.concat(this.control));
    this.control = [];
  }
}

/**
 * The header of a frame with `length` payload bytes: unmasked (server to client), or with
 * `zeroMask` a client's, masked with an all-zero key so the payload goes out as it is.
 */
export function frameHeader(opcode: number, fin: boolean, length: number, zeroMask = false): Buffer {
  const b0 = (fin ? 0x80 : 0) | opcode;
  const lengthBytes = length < 126 ? 0 : length < 0x10000 ? 2 : 8;
  const h = Buffer.alloc(2 + lengthBytes + (zeroMask ? 4 : 0)); // zero-filled: the key, when there is one
  h[0] = b0;
  h[1] = (zeroMask ? 0x80 : 0) | (lengthBytes === 0 ? length : lengthBytes === 2 ? 126 : 127);
  if (lengthBytes === 2) h.writeUInt16BE(length, 2);
  if (lengthBytes === 8) {
    h.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    h.writeUInt32BE(length >>> 0, 6);
  }
  return h;
}

/** A close frame's payload: the code and a reason (already cut to fit). */
export function closePayload(code: number, reason: string): Buffer {
  const r = Buffer.from(reason, 'utf8');
  const p = Buffer.allocUnsafe(2 + r.length);
  p.writeUInt16BE(code, 0);
  r.copy(p, 2);
  return p;
}

/** Code and reason of a received close frame; 1005 when it carries no code. */
export function parseClosePayload(p: Buffer): { code: number; reason: string } {
  if (p.length < 2) return { code: 1005, reason: '' };
  return { code: p.readUInt16BE(0), reason: p.subarray(2).toString('utf8') };
}
