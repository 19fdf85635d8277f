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

  it('does not take a slow reader for a dead one while our sends are queued', async () => {
    const n = accepted.length;
    const peer = await silentPeer(port);
    await until(() => accepted.length > n, 'the server side');
    const ws = accepted[n]!;
    // Fill the pipe: the peer reads nothing, so the sends stay queued on our side.
    const chunk = Buffer.alloc(64 * 1024);
    await until(() => {
      ws.send(chunk);
      return ws.bufferedAmount > 0;
    }, 'sends to queue up');
    heartbeat(ws, INTERVAL_MS);
    const t0 = Date.now();
    await until(() => Date.now() - t0 > 10 * INTERVAL_MS, 'ten intervals');
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.terminate();
    peer.destroy();
  });
});
