import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, connect as netConnect, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { SharedBufferReads, sendBinaryCopy } from '../core/ws-send-frames';
import { startTunnel } from '../core/tunnel';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Waits for a state, a turn of the event loop at a time (no fixed sleep). */
async function until(cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

const closers: Array<() => void> = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

interface Peer {
  /** The server's side of the one WebSocket (`ws`'s own server: it insists on masked client frames). */
  server: Promise<WebSocket>;
  client: WebSocket;
}

/** A `ws` server and a client dialed the way dialStream does (zero masking key), open. */
async function wsPair(): Promise<Peer> {
  const http: Server = createHttpServer();
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false, maxPayload: 1024 * 1024 });
  const server = new Promise<WebSocket>((resolve) => wss.once('connection', resolve));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  closers.push(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    http.close();
  });
  const client = new WebSocket(`ws://127.0.0.1:${(http.address() as AddressInfo).port}/`, { perMessageDeflate: false, generateMask: (m) => m.fill(0) });
  await new Promise<void>((resolve, reject) => {
    client.once('open', () => resolve());
    client.once('error', reject);
  });
  client.pause(); // until the tunnel takes it
  return { server, client };
}

/** A local TCP service the tunnel connects to with shared-buffer reads, as the agent does; its accepted socket. */
async function localPair(): Promise<{ target: Promise<Socket>; local: Socket; reads: SharedBufferReads }> {
  const srv: NetServer = createNetServer({ allowHalfOpen: true });
  const target = new Promise<Socket>((resolve) => srv.once('connection', resolve));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  closers.push(() => srv.close());
  const reads = new SharedBufferReads();
  const local = netConnect({ port: (srv.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true, onread: reads.onread });
  local.pause();
  await new Promise<void>((r) => local.once('connect', () => r()));
  closers.push(() => local.destroy());
  // A test that ends early leaves its target to be reset by the cleanup: that is not an error of the next test.
  void target.then((s) => s.on('error', () => undefined));
  return { target, local, reads };
}

describe('binary frames written past ws, from shared-buffer reads', () => {
  it('sends one frame per call with each header length form, and ws on the other side reads them exactly', async () => {
    const { server, client } = await wsPair();
    const srv = await server;
    const got: Buffer[] = [];
    srv.on('message', (d: Buffer) => got.push(Buffer.from(d)));
    const sizes = [1, 125, 126, 4096, 4097, 65535, 65536];
    const scratch = Buffer.alloc(65536 + 7);
    const sent: Buffer[] = [];
    let written = 0;
    for (const n of sizes) {
      randomBytes(n).copy(scratch, 0);
      sent.push(Buffer.from(scratch.subarray(0, n)));
      const held = sendBinaryCopy(client, scratch, n, () => written++);
      // The fast path is taken with the ws we ship (its Sender internals are as expected).
      expect(held).toBeGreaterThanOrEqual(n);
      scratch.fill(0xee); // the caller reuses its buffer at once: the frame must already hold a copy
    }
    await until(() => got.length === sizes.length && written === sizes.length, 'every frame');
    expect(got.map((b) => b.length)).toEqual(sizes);
    got.forEach((b, i) => expect(b.equals(sent[i]!)).toBe(true));
    // ws's own frames still work around ours: a text message and a ping after the binary ones.
    const pong = new Promise<void>((r) => client.once('pong', () => r()));
    client.resume();
    client.send('after');
    client.ping();
    await pong;
    await until(() => got.length === sizes.length + 1, 'the text message');
    expect(got.at(-1)!.toString()).toBe('after');
  });

  it('leaves the frame to ws while its Sender has a message half sent', async () => {
    const { client } = await wsPair();
    client.send(Buffer.from('first part'), { binary: true, fin: false });
    expect(sendBinaryCopy(client, Buffer.from('x'), 1, () => undefined)).toBe(-1);
  });

  it('tunnels odd-sized writes both ways at once, byte-exact, and a local end becomes a normal close after every byte', async () => {
    const { server, client } = await wsPair();
    const { target, local, reads } = await localPair();
    const srv = await server;
    const tgt = await target;
    const toPeer: Buffer[] = [];
    srv.on('message', (d: Buffer) => toPeer.push(Buffer.from(d)));
    const closed = new Promise<number>((r) => srv.once('close', (code) => r(code)));
    const tunnel = startTunnel(local, client, { localReads: reads, halfClose: false });
    // target -> tunnel -> ws peer: odd sizes, written as fast as TCP takes them.
    const up = randomBytes(9 * 1024 * 1024 + 7);
    const sizes = [1, 125, 126, 65535, 65536, 65537, 100_003, 3];
    let off = 0;
    for (let i = 0; off < up.length; i++) {
      const n = Math.min(sizes[i % sizes.length]!, up.length - off);
      tgt.write(up.subarray(off, off + n));
      off += n;
    }
    // ws peer -> tunnel -> target, at the same time.
    const down = randomBytes(3 * 1024 * 1024 + 11);
    const fromPeer: Buffer[] = [];
    tgt.on('data', (d: Buffer) => fromPeer.push(d));
    for (let o = 0; o < down.length; o += 65_521) srv.send(down.subarray(o, o + 65_521));
    await until(() => fromPeer.reduce((a, b) => a + b.length, 0) === down.length, 'the bytes from the peer');
    tgt.end();
    expect(await closed).toBe(1000);
    const r = await tunnel.done;
    expect(r.clean).toBe(true);
    expect(r.bytesOut).toBe(up.length);
    expect(sha256(Buffer.concat(toPeer))).toBe(sha256(up));
    expect(sha256(Buffer.concat(fromPeer))).toBe(sha256(down));
    // Each read went out as one frame of at most 64 KiB.
    expect(Math.max(...toPeer.map((b) => b.length))).toBeLessThanOrEqual(65536);
  });

  it('stops reading the local socket while the peer does not read, and delivers everything once it does', async () => {
    const { server, client } = await wsPair();
    const { target, local, reads } = await localPair();
    const srv = await server;
    const tgt = await target;
    const received: Buffer[] = [];
    srv.on('message', (d: Buffer) => received.push(Buffer.from(d)));
    srv.pause(); // a stalled peer
    const tunnel = startTunnel(local, client, { localReads: reads });
    const data = randomBytes(64 * 1024 * 1024);
    let blocked = false;
    const writeAll = (): void => {
      for (let o = 0; o < data.length; o += 65536) if (!tgt.write(data.subarray(o, o + 65536))) blocked = true;
      tgt.end();
    };
    writeAll();
    // The sink reached its high-water mark and the tunnel stopped reading the local socket (the read
    // handle stopped: with `onread` a socket paused that way does not report isPaused()). The mark
    // counts each frame's whole 64 KiB buffer, so how many payload bytes ws holds then depends on how
    // much each read got: 8 reads of 64 KiB on a quiet machine, fewer bytes when reads come short
    // under load (this waited for 512 KiB buffered once and timed out at a load of 4).
    const reading = (): boolean => (local as unknown as { _handle: { reading: boolean } })._handle.reading;
    await until(() => blocked && client.bufferedAmount > 0 && !reading(), 'the local socket to stop being read');
    // What the tunnel holds for the stalled peer stays bounded (512 KiB high-water mark, frame buffers).
    expect(client.bufferedAmount).toBeLessThanOrEqual(1024 * 1024 + 65550);
    expect(tgt.writableLength).toBeGreaterThan(32 * 1024 * 1024);
    srv.resume();
    await until(() => received.reduce((a, b) => a + b.length, 0) === data.length, 'every byte at the peer', 60_000);
    expect(sha256(Buffer.concat(received))).toBe(sha256(data));
    tunnel.close(1000, '');
    await tunnel.done;
  });

  it('resets the local side when the peer closes with anything but 1000', async () => {
    const { server, client } = await wsPair();
    const { target, local, reads } = await localPair();
    const srv = await server;
    const tgt = await target;
    const reset = new Promise<string | undefined>((r) => tgt.once('error', (e: NodeJS.ErrnoException) => r(e.code)));
    const tunnel = startTunnel(local, client, { localReads: reads });
    tgt.write(Buffer.alloc(70_000, 1));
    await new Promise<void>((r) => srv.once('message', () => r()));
    srv.close(1001, 'going away');
    expect(await reset).toBe('ECONNRESET');
    const r = await tunnel.done;
    expect(r.closeCode).toBe(1001);
    expect(r.clean).toBe(false);
  });
});
