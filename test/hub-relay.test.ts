import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { FrameReader, OPCODE, parseClosePayload, type FrameHandler } from '../core/ws-frames';
import { HubDataDir } from '../hub/data-dir';
import { newStreamId, signStreamToken, type StreamSide } from '../hub/stream-tokens';
import { EXT_HEADER } from '../wire';
import { startStack, until, type Stack } from './helpers/stack';
import { wsFrame } from './helpers/hostile';
import { sha256 } from './helpers/targets';

interface Received {
  frames: Array<{ opcode: number; fin: boolean; data: Buffer }>;
  close?: { code: number; reason: string };
  ended: Promise<void>;
}

/** A client frame: masked with `mask` (random unless given), FIN and opcode as asked. */
function clientFrame(opcode: number, payload: Buffer, o: { fin?: boolean; mask?: Buffer | null } = {}): Buffer {
  return wsFrame(payload, { opcode, ...(o.fin === undefined ? {} : { fin: o.fin }), mask: o.mask === undefined ? randomBytes(4) : o.mask });
}

/** A raw WebSocket client on TLS: the upgrade by hand, then frames as bytes; records what the hub sends. */
async function rawSide(stack: Stack, streamId: string, side: StreamSide, announce?: string): Promise<{ socket: TLSSocket; rx: Received; close: (code: number) => void }> {
  const key = new HubDataDir(stack.dir).secrets().stream_signing_key;
  const token = signStreamToken(key, { streamId, side, deviceId: 'pi-001', exp: Date.now() + 60_000 });
  const [host, port] = stack.hub.host.split(':');
  const socket = tlsConnect({ host, port: Number(port), ca: stack.caPem });
  await new Promise<void>((r) => socket.once('secureConnect', () => r()));
  socket.write(
    `GET /bridges/${streamId} HTTP/1.1\r\nHost: ${stack.hub.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${token}\r\n` +
      `${announce ? `${EXT_HEADER}: ${announce}\r\n` : ''}\r\n`,
  );
  let closing = false;
  const rx: Received = { frames: [], ended: new Promise((r) => socket.once('close', () => r())) };
  let current: { opcode: number; fin: boolean; parts: Buffer[] } | undefined;
  const handler: FrameHandler = {
    frameStart: (opcode, fin) => void (current = { opcode, fin, parts: [] }),
    payload: (chunk, last) => {
      current!.parts.push(Buffer.from(chunk));
      if (last) rx.frames.push({ opcode: current!.opcode, fin: current!.fin, data: Buffer.concat(current!.parts) });
    },
    control: (opcode, payload) => {
      if (opcode !== OPCODE.CLOSE) return;
      rx.close = parseClosePayload(payload);
      // Answer as a client does: echo the close, then wait for the server to end the connection.
      if (!closing) socket.write(clientFrame(OPCODE.CLOSE, Buffer.from(payload)));
    },
    violation: (code, why) => {
      throw new Error(`hub broke the protocol: ${code} ${why}`);
    },
  };
  const reader = new FrameReader(handler, Number.MAX_SAFE_INTEGER, 'forbidden');
  let head = Buffer.alloc(0);
  let upgraded = false;
  socket.on('data', (chunk: Buffer) => {
    if (upgraded) return reader.write(chunk);
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    if (!head.subarray(0, end).toString().startsWith('HTTP/1.1 101')) throw new Error(head.toString());
    upgraded = true;
    if (head.length > end + 4) reader.write(head.subarray(end + 4));
  });
  socket.on('error', () => undefined);
  const close = (code: number): void => {
    closing = true;
    socket.write(clientFrame(OPCODE.CLOSE, Buffer.from([code >> 8, code & 0xff])));
  };
  return { socket, rx, close };
}

/** The hub's frame relay (hub/bridge.ts) with clients that mask, fragment and misbehave as peers may. */
describe('hub frame relay', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack();
    stack.deviceConnectionString('pi-001'); // registers the device the tokens below name
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('passes randomly masked frames, split anywhere and fragmented, on byte-exact as whole unmasked frames', async () => {
    const id = newStreamId();
    const device = await rawSide(stack, id, 'device');
    const service = await rawSide(stack, id, 'service');
    await until(() => stack.hub.activeStreams >= 1, 'the stream to join');
    const payload = randomBytes(200_000 + 65_536);
    // Frames of odd sizes; one message in three fragments; written to the socket in odd pieces.
    const frames = [
      clientFrame(OPCODE.BINARY, payload.subarray(0, 1)),
      clientFrame(OPCODE.BINARY, payload.subarray(1, 65_536 + 1)),
      clientFrame(OPCODE.BINARY, payload.subarray(65_537, 100_000), { fin: false }),
      clientFrame(OPCODE.PING, Buffer.from('p')), // a control frame between fragments
      clientFrame(OPCODE.CONTINUATION, payload.subarray(100_000, 150_000), { fin: false }),
      clientFrame(OPCODE.CONTINUATION, payload.subarray(150_000, 200_000)),
      clientFrame(OPCODE.BINARY, payload.subarray(200_000), { mask: Buffer.alloc(4) }), // all-zero key, as ours
    ];
    const wire = Buffer.concat(frames);
    for (let off = 0, step = 7; off < wire.length; off += step, step = (step * 31) % 9001 + 1) service.socket.write(wire.subarray(off, off + step));
    await until(() => device.rx.frames.reduce((n, f) => n + f.data.length, 0) >= payload.length, 'every byte at the device');
    expect(sha256(Buffer.concat(device.rx.frames.map((f) => f.data)))).toBe(sha256(payload));
    // Each piece as it arrived, a whole binary frame of its own: the device is never left inside a
    // frame, however the sender framed, fragmented or split its bytes.
    for (const f of device.rx.frames) {
      expect([f.opcode, f.fin]).toEqual([OPCODE.BINARY, true]);
      expect(f.data.length).toBeGreaterThan(0);
      expect(f.data.length).toBeLessThanOrEqual(65_536);
    }
    service.close(1000);
    await device.rx.ended;
    expect(device.rx.close?.code).toBe(1000);
    await service.rx.ended;
    expect(service.rx.close?.code).toBe(1000); // the hub's echo
  });

  it('drops a fragmented text message to a side that did not announce, and keeps the bytes around it', async () => {
    const id = newStreamId();
    const device = await rawSide(stack, id, 'device');
    const service = await rawSide(stack, id, 'service', 'eof');
    await until(() => stack.hub.activeStreams >= 1, 'the stream to join');
    service.socket.write(
      Buffer.concat([
        clientFrame(OPCODE.BINARY, Buffer.from('before')),
        clientFrame(OPCODE.TEXT, Buffer.from('{"type":'), { fin: false }),
        clientFrame(OPCODE.CONTINUATION, Buffer.from('"eof"}')),
        clientFrame(OPCODE.BINARY, Buffer.from('after')),
      ]),
    );
    await until(() => device.rx.frames.length >= 2, 'the binary frames');
    expect(device.rx.frames.map((f) => f.data.toString())).toEqual(['before', 'after']);
    expect(service.rx.frames[0]!.opcode).toBe(OPCODE.TEXT); // its hello
    service.socket.destroy();
    await device.rx.ended;
    expect(device.rx.close).toEqual({ code: 4003, reason: 'service connection lost' });
  });

  it('a sender that vanishes in the middle of a frame: the other side gets the bytes so far, then 4003 with the reason', async () => {
    const id = newStreamId();
    const device = await rawSide(stack, id, 'device');
    const service = await rawSide(stack, id, 'service');
    await until(() => stack.hub.activeStreams >= 1, 'the stream to join');
    const frame = clientFrame(OPCODE.BINARY, randomBytes(50_000));
    const headerBytes = frame.length - 50_000;
    service.socket.write(frame.subarray(0, headerBytes + 10_000)); // a fifth of the frame
    await until(() => device.rx.frames.reduce((n, f) => n + f.data.length, 0) >= 10_000, 'the first piece at the device');
    service.socket.destroy();
    await device.rx.ended;
    expect(device.rx.close).toEqual({ code: 4003, reason: 'service connection lost' });
    await until(() => stack.hub.activeStreams === 0, 'the stream to end');
  });

  it('closes a side that breaks the protocol (1002 unmasked, 1009 oversized) and tells the other 4003', async () => {
    for (const [bad, code] of [
      [clientFrame(OPCODE.BINARY, Buffer.from('x'), { mask: null }), 1002],
      [clientFrame(OPCODE.BINARY, randomBytes(65_537)), 1009],
    ] as const) {
      const id = newStreamId();
      const device = await rawSide(stack, id, 'device');
      const service = await rawSide(stack, id, 'service');
      await until(() => stack.hub.activeStreams >= 1, 'the stream to join');
      service.socket.write(bad);
      await service.rx.ended;
      expect(service.rx.close?.code).toBe(code);
      await device.rx.ended;
      expect(device.rx.close?.code).toBe(4003);
      expect(device.rx.frames).toEqual([]);
      await until(() => stack.hub.activeStreams === 0, 'the stream to end');
    }
  });
});
