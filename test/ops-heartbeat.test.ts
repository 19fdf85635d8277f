import { randomBytes } from 'node:crypto';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { heartbeat } from '../core/ws-heartbeat';
import { until } from './helpers/stack';

const INTERVAL_MS = 100;

/**
 * A peer that completes the WebSocket handshake and then goes silent without closing: it never
 * answers a ping, like a device whose power was cut behind a NAT.
 */
function silentPeer(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1');
    s.on('error', reject);
    s.on('connect', () =>
      s.write(
        `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      ),
    );
    s.once('data', (d: Buffer) => {
      if (!d.toString().startsWith('HTTP/1.1 101')) return reject(new Error('no upgrade'));
      s.pause(); // never read again: pings pile up unanswered
      resolve(s);
    });
  });
}

describe('WebSocket heartbeat (half-open peers)', () => {
  let wss: WebSocketServer;
  let port: number;
  const accepted: WebSocket[] = [];

  beforeAll(async () => {
    wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    wss.on('connection', (ws) => accepted.push(ws));
    await new Promise((r) => wss.once('listening', r));
    port = (wss.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => wss.close(() => r())));

  it('cuts a peer that stopped answering (close 1006)', async () => {
    const n = accepted.length;
    const peer = await silentPeer(port);
    await until(() => accepted.length > n, 'the server side');
    const ws = accepted[n]!;
    const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
    heartbeat(ws, INTERVAL_MS);
    expect(await closed).toBe(1006);
    peer.destroy();
  });

  it('keeps a peer that answers pings', async () => {
    const n = accepted.length;
    const client = new WebSocket(`ws://127.0.0.1:${port}`);
    await new Promise((r) => client.once('open', r));
    await until(() => accepted.length > n, 'the server side');
    const ws = accepted[n]!;
    let pings = 0;
    client.on('ping', () => pings++);
    heartbeat(ws, INTERVAL_MS);
    await until(() => pings >= 5, 'five pings answered');
    expect(ws.readyState).toBe(WebSocket.OPEN);
    client.close();
  });

  /** Fills the pipe towards a peer that reads nothing: our sends stay queued. */
  async function queueSends(ws: WebSocket): Promise<void> {
    const chunk = Buffer.alloc(64 * 1024);
    await until(() => {
      ws.send(chunk);
      return ws.bufferedAmount > 0;
    }, 'sends to queue up');
  }

  it('does not take a stalled reader for a dead one while it pings us (our sends queued)', async () => {
    const n = accepted.length;
    const peer = await silentPeer(port);
    await until(() => accepted.length > n, 'the server side');
    const ws = accepted[n]!;
    await queueSends(ws);
    // Reads nothing, but says it is alive the way agent, hub and connect do while paused: a ping
    // every interval (a masked, empty ping frame).
    const pinger = setInterval(() => peer.write(Buffer.from([0x89, 0x80, 0, 0, 0, 0])), INTERVAL_MS);
    heartbeat(ws, INTERVAL_MS);
    const t0 = Date.now();
    await until(() => Date.now() - t0 > 10 * INTERVAL_MS, 'ten intervals');
    clearInterval(pinger);
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.terminate();
    peer.destroy();
  });

  it('cuts a peer that went silent while our sends are queued, within the bound (2-2.5 intervals)', async () => {
    const n = accepted.length;
    const peer = await silentPeer(port);
    await until(() => accepted.length > n, 'the server side');
    const ws = accepted[n]!;
    await queueSends(ws);
    const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
    const t0 = Date.now();
    heartbeat(ws, INTERVAL_MS);
    expect(await closed).toBe(1006);
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(2 * INTERVAL_MS - 20);
    // The bound is 2.5 intervals; timers on a busy machine run late, so only an order of magnitude is asserted.
    expect(elapsed).toBeLessThan(20 * INTERVAL_MS);
    peer.destroy();
  });

  it('keeps pinging while paused (the peer must hear from us), and does not judge the peer then', async () => {
    const n = accepted.length;
    const client = new WebSocket(`ws://127.0.0.1:${port}`);
    await new Promise((r) => client.once('open', r));
    await until(() => accepted.length > n, 'the server side');
    const ws = accepted[n]!;
    client.pause(); // reads nothing until the end: the pings wait in its socket
    let pings = 0;
    ws.pause(); // we read nothing either: backpressure
    heartbeat(ws, INTERVAL_MS);
    const t0 = Date.now();
    await until(() => Date.now() - t0 > 6 * INTERVAL_MS, 'six intervals');
    expect(ws.readyState).toBe(WebSocket.OPEN);
    client.on('ping', () => pings++);
    client.resume();
    await until(() => pings >= 3, 'the pings sent while paused');
    ws.terminate();
  });
});
