import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { FrameReader, OPCODE, parseClosePayload, type FrameHandler } from '../core/ws-frames';
import { receivePieces } from '../core/ws-pieces';
import { startTunnel } from '../core/tunnel';
import { wsFrame } from './helpers/hostile';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** A server frame (unmasked), written by hand. */
function serverFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  return wsFrame(payload, { opcode, fin, mask: null });
}

/** Waits for a state, a turn of the event loop at a time (no fixed sleep). */
async function until(cond: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

interface RawServer {
  port: number;
  /** The server side of the one connection, once upgraded. */
  socket: Promise<Socket>;
  /** Frames the client sent (unmasked), in order. */
  fromClient: Array<{ opcode: number; data: Buffer }>;
  server: Server;
}

/** A WebSocket server by hand: the upgrade answered, then whatever bytes the test writes, in its chunks. */
async function rawServer(): Promise<RawServer> {
  const fromClient: RawServer['fromClient'] = [];
  const server = createHttpServer();
  const socket = new Promise<Socket>((resolve) => {
    server.on('upgrade', (req, sock: Socket) => {
      const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}${GUID}`).digest('base64');
      sock.setNoDelay(true);
      sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      let parts: Buffer[] = [];
      const handler: FrameHandler = {
        frameStart: () => (parts = []),
        payload: (chunk, last) => {
          parts.push(Buffer.from(chunk));
          if (last) fromClient.push({ opcode: OPCODE.BINARY, data: Buffer.concat(parts) });
        },
        control: (opcode, payload) => fromClient.push({ opcode, data: Buffer.from(payload) }),
        violation: (code, why) => fromClient.push({ opcode: -1, data: Buffer.from(`${code} ${why}`) }),
      };
      const reader = new FrameReader(handler, Number.MAX_SAFE_INTEGER, 'required');
      sock.on('data', (chunk: Buffer) => reader.write(chunk));
      sock.on('error', () => undefined);
      resolve(sock);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, socket, fromClient, server };
}

/** A real `ws` client, taken over by receivePieces; records binary pieces and the events ws still emits. */
async function piecesClient(port: number, maxPayload = 1024 * 1024) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, maxPayload });
  const events: Array<{ kind: 'bytes' | 'text' | 'ping'; data: Buffer }> = [];
  let taken = false;
  const close = new Promise<{ code: number; reason: string }>((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() })));
  const errors: Error[] = [];
  ws.on('error', (err) => errors.push(err));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => {
      ws.pause();
      taken = receivePieces(ws, (piece) => {
        const last = events.at(-1);
        // Copy: the piece is a view of the socket's chunk.
        if (last?.kind === 'bytes') last.data = Buffer.concat([last.data, piece]);
        else events.push({ kind: 'bytes', data: Buffer.from(piece) });
      });
      ws.resume();
      resolve();
    });
    ws.once('error', reject);
  });
  ws.on('message', (data, isBinary) => events.push({ kind: isBinary ? 'bytes' : 'text', data: data as Buffer }));
  ws.on('ping', (data) => events.push({ kind: 'ping', data }));
  const socket = (ws as unknown as { _socket: Socket })._socket;
  return { ws, events, taken, close, errors, socket };
}

/** Writes `chunks` one at a time, each read by the client on its own before the next is written. */
async function deliver(server: Socket, client: Socket, chunks: Buffer[]): Promise<void> {
  let total = client.bytesRead;
  for (const c of chunks) {
    total += c.length;
    server.write(c);
    const want = total;
    await until(() => client.bytesRead >= want, `client read ${want} bytes`);
  }
}

function cut(bytes: Buffer, sizes: (i: number) => number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0, i = 0; off < bytes.length; i++) {
    const n = sizes(i);
    out.push(bytes.subarray(off, off + n));
    off += n;
  }
  return out;
}

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

describe('receiving binary payload in pieces (core/ws-pieces.ts) from a real ws client', () => {
  const small = [0, 1, 125, 126].map((n) => randomBytes(n));
  const big = [65535, 65536].map((n) => randomBytes(n));
  const frag = [randomBytes(100), Buffer.alloc(0), randomBytes(300)];
  // Small frames of every length class, text and control frames between them, fragmented messages.
  const smallPart = Buffer.concat([
    serverFrame(OPCODE.BINARY, small[0]!),
    serverFrame(OPCODE.BINARY, small[1]!),
    serverFrame(OPCODE.TEXT, Buffer.from('hello')),
    serverFrame(OPCODE.BINARY, small[2]!),
    serverFrame(OPCODE.PING, Buffer.from('p')),
    serverFrame(OPCODE.BINARY, small[3]!),
    serverFrame(OPCODE.BINARY, frag[0]!, false),
    serverFrame(OPCODE.CONTINUATION, frag[1]!, false),
    serverFrame(OPCODE.CONTINUATION, frag[2]!, true),
    serverFrame(OPCODE.TEXT, Buffer.from('ab'), false),
    serverFrame(OPCODE.CONTINUATION, Buffer.from('cd'), true),
  ]);
  const bigPart = Buffer.concat([...big.map((b) => serverFrame(OPCODE.BINARY, b)), serverFrame(OPCODE.TEXT, Buffer.from('end'))]);
  const closeFrame = serverFrame(OPCODE.CLOSE, Buffer.from([0x03, 0xe8, ...Buffer.from('done')]));
  const expected = [
    { kind: 'bytes', data: Buffer.concat([small[0]!, small[1]!]) },
    { kind: 'text', data: Buffer.from('hello') },
    { kind: 'bytes', data: small[2]! },
    { kind: 'ping', data: Buffer.from('p') },
    { kind: 'bytes', data: Buffer.concat([small[3]!, ...frag]) },
    { kind: 'text', data: Buffer.from('abcd') },
    { kind: 'bytes', data: Buffer.concat(big) },
    { kind: 'text', data: Buffer.from('end') },
  ];

  async function run(chunks: Buffer[]): Promise<void> {
    const srv = await rawServer();
    servers.push(srv.server);
    const c = await piecesClient(srv.port);
    expect(c.taken).toBe(true); // the ws we ship can be read past; a ws upgrade that breaks it fails here
    const server = await srv.socket;
    await deliver(server, c.socket, chunks);
    await deliver(server, c.socket, [closeFrame]);
    await until(() => srv.fromClient.some((f) => f.opcode === OPCODE.CLOSE), 'the client answers the close');
    server.end();
    expect(await c.close).toEqual({ code: 1000, reason: 'done' });
    expect(c.events.map((e) => ({ kind: e.kind, data: e.data.toString('hex') }))).toEqual(expected.map((e) => ({ kind: e.kind, data: e.data.toString('hex') })));
    // ws still answers pings and closes as a client does.
    expect(srv.fromClient).toEqual([
      { opcode: OPCODE.PONG, data: Buffer.from('p') },
      { opcode: OPCODE.CLOSE, data: Buffer.from([0x03, 0xe8, ...Buffer.from('done')]) },
    ]);
    expect(c.errors).toEqual([]);
  }

  it('byte-exact with every frame split at every byte, headers straddling chunks, and big frames cut at odd places', async () => {
    await run([...cut(smallPart, () => 1), ...cut(bigPart, (i) => [997, 1, 2, 3, 5, 7, 4093][i % 7]!)]);
  });

  it('byte-exact with everything in one chunk', async () => {
    await run([Buffer.concat([smallPart, bigPart])]);
  });

  async function refused(frame: Buffer, maxPayload?: number): Promise<{ code: number; errors: Error[]; fromClient: RawServer['fromClient'] }> {
    const srv = await rawServer();
    servers.push(srv.server);
    const c = await piecesClient(srv.port, maxPayload);
    expect(c.taken).toBe(true);
    const server = await srv.socket;
    server.write(Buffer.concat([serverFrame(OPCODE.BINARY, Buffer.from('ok')), frame]));
    await until(() => srv.fromClient.length > 0, 'the client closes');
    server.end(); // the server's side of the close handshake
    const { code } = await c.close;
    expect(c.events).toEqual([{ kind: 'bytes', data: Buffer.from('ok') }]); // what came before is delivered
    return { code, errors: c.errors, fromClient: srv.fromClient };
  }

  it('a masked frame from the server gets a 1002 close and an EWS_PROTOCOL error', async () => {
    const r = await refused(wsFrame(Buffer.from('masked'), { mask: randomBytes(4) }));
    expect(parseClosePayload(r.fromClient[0]!.data).code).toBe(1002);
    expect(r.errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(['EWS_PROTOCOL']);
    expect(r.code).toBe(1006); // the server never answered with a close frame
  });

  it('a frame over maxPayload gets 1009, before its payload is read', async () => {
    const r = await refused(wsFrame(Buffer.alloc(0), { announce: 1001, mask: null }), 1000);
    expect(parseClosePayload(r.fromClient[0]!.data).code).toBe(1009);
    expect(r.errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(['EWS_PROTOCOL']);
  });

  it('a reserved opcode gets 1002', async () => {
    const r = await refused(serverFrame(3, Buffer.from('x')));
    expect(parseClosePayload(r.fromClient[0]!.data).code).toBe(1002);
  });

  it('invalid UTF-8 in a text frame is still refused by ws (1007)', async () => {
    const r = await refused(serverFrame(OPCODE.TEXT, Buffer.from([0xff, 0xfe])));
    expect(parseClosePayload(r.fromClient[0]!.data).code).toBe(1007);
  });
});

describe('the tunnel receiving in pieces', () => {
  it('keeps memory bounded while the local reader is slow, then delivers every byte', async () => {
    const srv = await rawServer();
    servers.push(srv.server);
    // The local side: a TCP peer that reads nothing until told.
    let localPeer!: Socket;
    const localServer = createNetServer({ pauseOnConnect: true }, (s) => (localPeer = s));
    servers.push(localServer as unknown as Server);
    await new Promise<void>((r) => localServer.listen(0, '127.0.0.1', r));
    const local = netConnect({ port: (localServer.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    await new Promise<void>((r) => local.once('connect', () => r()));
    await until(() => localPeer !== undefined, 'the local peer');

    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}`, { perMessageDeflate: false });
    await new Promise<void>((r) => ws.once('open', () => (ws.pause(), r())));
    const tunnel = startTunnel(local, ws);
    const server = await srv.socket;
    const clientSocket = (ws as unknown as { _socket: Socket })._socket;
    expect(clientSocket.listeners('data')).toHaveLength(1); // read past ws
    // After each chunk the client read: what the tunnel holds for the local side.
    let maxHeld = 0;
    clientSocket.on('data', () => (maxHeld = Math.max(maxHeld, local.writableLength)));

    // 64 KiB frames as fast as the client takes them, until the tunnel paused it; then 8 MiB more.
    const sent = createHash('sha256');
    let sentBytes = 0;
    let seed = 0;
    const push = (): boolean => {
      const payload = Buffer.alloc(64 * 1024, seed++ & 0xff);
      sent.update(payload);
      sentBytes += payload.length;
      return server.write(serverFrame(OPCODE.BINARY, payload));
    };
    while (!ws.isPaused) {
      if (!push()) await new Promise((r) => server.once('drain', r));
      await new Promise((r) => setImmediate(r));
      expect(sentBytes).toBeLessThan(1024 * 1024 * 1024);
    }
    for (let i = 0; i < 128; i++) push();
    expect(ws.isPaused).toBe(true);

    const got = createHash('sha256');
    let gotBytes = 0;
    localPeer.on('data', (chunk: Buffer) => {
      got.update(chunk);
      gotBytes += chunk.length;
    });
    localPeer.resume();
    server.end(serverFrame(OPCODE.CLOSE, Buffer.from([0x03, 0xe8])));
    await new Promise<void>((r) => localPeer.once('end', () => r()));
    const r = await tunnel.done;
    expect(gotBytes).toBe(sentBytes);
    expect(got.digest('hex')).toBe(sent.digest('hex'));
    expect(r.bytesIn).toBe(sentBytes);
    expect(r.clean).toBe(true);
    // Never more than the local side's high-water mark plus one chunk read (64 KiB) held for it.
    expect(maxHeld).toBeGreaterThan(0);
    expect(maxHeld).toBeLessThan(256 * 1024);
    localPeer.destroy();
  });
});

describe('a server-side ws taken over', () => {
  it('unmasks what a real ws client sends (random masks), byte-exact, text and close still ws-handled', async () => {
    const { WebSocketServer } = await import('ws');
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false, maxPayload: 1024 * 1024 });
    servers.push(wss as unknown as Server);
    await new Promise<void>((r) => wss.once('listening', () => r()));
    const got: Buffer[] = [];
    const texts: string[] = [];
    let taken = false;
    const closed = new Promise<number>((resolve) => {
      wss.once('connection', (ws) => {
        ws.pause();
        taken = receivePieces(ws, (piece) => got.push(Buffer.from(piece)));
        ws.on('message', (data, isBinary) => (isBinary ? got.push(data as Buffer) : texts.push(data.toString())));
        ws.once('close', (code) => resolve(code));
        ws.resume();
      });
    });
    const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { perMessageDeflate: false });
    await new Promise<void>((r) => client.once('open', () => r()));
    const payloads = [randomBytes(1), randomBytes(70_000), randomBytes(65536), randomBytes(125)];
    client.send(payloads[0]!);
    client.send('a text');
    for (const p of payloads.slice(1)) client.send(p);
    client.close(1000, 'bye');
    expect(await closed).toBe(1000);
    expect(taken).toBe(true);
    expect(texts).toEqual(['a text']);
    expect(Buffer.concat(got).equals(Buffer.concat(payloads))).toBe(true);
  });
});
