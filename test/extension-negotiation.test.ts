import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer as createHttpsServer } from 'node:https';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { startTunnel } from '../core/tunnel';
import { waitOpen } from '../agent/stream-session';
import { dialStream } from '../core/stream-dial';
import { peerExtensions } from '../core/peer-extensions';
import { HubDataDir } from '../hub/data-dir';
import { newStreamId, signStreamToken, type StreamSide } from '../hub/stream-tokens';
import { EXT_HEADER, HELLO_HEADER, STREAM_EXTENSIONS, encodeControl } from '../wire';
import { startStack, until, type Stack } from './helpers/stack';

interface Frame {
  text: boolean;
  data: string;
}

/** One raw leg: dials like our sides do (announcing `extensions`) and records every frame and the 101's headers. */
function rawLeg(stack: Stack, streamId: string, side: StreamSide, extensions: readonly string[]) {
  const key = new HubDataDir(stack.dir).secrets().stream_signing_key;
  const token = signStreamToken(key, { streamId, side, deviceId: 'pi-001', exp: Date.now() + 60_000 });
  const ws = dialStream(`wss://${stack.hub.host}/bridges/${streamId}`, token, stack.caPem, { extensions });
  const frames: Frame[] = [];
  let upgrade: IncomingMessage | undefined;
  ws.once('upgrade', (res: IncomingMessage) => (upgrade = res));
  ws.on('message', (d: RawData, isBinary: boolean) => frames.push({ text: !isBinary, data: d.toString() }));
  const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
  const open = new Promise<void>((r, j) => {
    ws.once('open', () => r());
    ws.once('error', j);
  });
  return { ws, frames, closed, open, upgrade: () => upgrade };
}

/** Extension negotiation on the streaming endpoint: our text frames only between sides that announced. */
describe('extension negotiation', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack();
    stack.deviceConnectionString('pi-001'); // registers the device the tokens below name
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('sends each announced side a hello with the other side\'s extensions before any of its bytes', async () => {
    const id = newStreamId();
    const device = rawLeg(stack, id, 'device', ['eof', 'exit']);
    await device.open;
    device.ws.send(Buffer.from('early')); // sent before the service arrives: must come after the hello
    const service = rawLeg(stack, id, 'service', STREAM_EXTENSIONS);
    await service.open;
    expect(device.upgrade()?.headers[HELLO_HEADER]).toBeDefined();
    expect(service.upgrade()?.headers[HELLO_HEADER]).toBeDefined();
    await until(() => device.frames.length >= 1 && service.frames.length >= 2, 'hellos and the early bytes');
    expect(device.frames[0]).toEqual({ text: true, data: JSON.stringify({ type: 'hello', ext: [...STREAM_EXTENSIONS] }) });
    expect(service.frames[0]).toEqual({ text: true, data: JSON.stringify({ type: 'hello', ext: ['eof', 'exit'] }) });
    expect(service.frames[1]).toEqual({ text: false, data: 'early' });
    expect([...(await peerExtensions(service.ws).ready)]).toEqual(['eof', 'exit']);
    expect([...(await peerExtensions(device.ws).ready)]).toEqual([...STREAM_EXTENSIONS]);
    device.ws.close(1000);
    expect(await service.closed).toBe(1000);
  });

  it('gives a side that announced nothing no hello header, no hello and no text frame; tells the other it is plain', async () => {
    const id = newStreamId();
    const device = rawLeg(stack, id, 'device', []);
    const service = rawLeg(stack, id, 'service', STREAM_EXTENSIONS);
    await Promise.all([device.open, service.open]);
    expect(device.upgrade()?.headers[HELLO_HEADER]).toBeUndefined();
    expect(peerExtensions(device.ws).known).toBe(true);
    expect(await peerExtensions(service.ws).ready).toEqual(new Set());
    // A text frame from the announced side never reaches the plain side; the bytes after it do.
    service.ws.send(encodeControl({ type: 'eof' }));
    service.ws.send(Buffer.from('after'));
    await until(() => device.frames.length >= 1, 'the bytes');
    expect(device.frames).toEqual([{ text: false, data: 'after' }]);
    expect(service.frames).toEqual([{ text: true, data: JSON.stringify({ type: 'hello', ext: [] }) }]);
    service.ws.close(1000);
    expect(await device.closed).toBe(1000);
  });

  it('takes only well-formed, bounded extension names from the header', async () => {
    const id = newStreamId();
    const device = rawLeg(stack, id, 'device', ['EOF', ' resize ', 'bad name', '{"x":1}', ...Array.from({ length: 100 }, (_, i) => `x${i}`)]);
    const service = rawLeg(stack, id, 'service', ['eof']);
    await Promise.all([device.open, service.open]);
    const ext = [...(await peerExtensions(service.ws).ready)];
    expect(ext.slice(0, 2)).toEqual(['eof', 'resize']);
    expect(ext.length).toBeLessThanOrEqual(32);
    expect(ext.every((e) => /^[a-z][a-z0-9-]*$/.test(e))).toBe(true);
    device.ws.close(1000);
    await service.closed;
  });
});

/** Through the agent: `eof` with a devstreams service, a normal close with a plain (IoT Hub) one. */
describe('half-close follows negotiation', () => {
  let stack: Stack;
  let target: ReturnType<typeof createServer>;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    stack = await startStack();
    target = createServer({ allowHalfOpen: true }, (sock) => sockets.push(sock));
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
    await stack.startAgent(`  t:\n    port: ${(target.address() as AddressInfo).port}\n`);
  });
  afterAll(async () => {
    await stack?.stop();
    target?.close();
  });

  function record(ws: WebSocket): { frames: Frame[]; closed: Promise<number> } {
    const frames: Frame[] = [];
    ws.on('message', (d: RawData, isBinary: boolean) => frames.push({ text: !isBinary, data: d.toString() }));
    const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
    ws.resume();
    return { frames, closed };
  }

  it('a target FIN reaches a devstreams service as eof', async () => {
    const ws = await stack.client.openStream(await stack.client.requestStream('pi-001', 't'));
    const { frames, closed } = record(ws);
    await until(() => sockets.length === 1, 'the agent to reach the target');
    sockets[0]!.end('bye');
    await until(() => frames.length === 3, 'hello, bytes and eof');
    expect(frames[0]!.text && JSON.parse(frames[0]!.data).type).toBe('hello');
    expect(frames.slice(1)).toEqual([{ text: false, data: 'bye' }, { text: true, data: encodeControl({ type: 'eof' }) }]);
    ws.close(1000);
    expect(await closed).toBe(1000);
  });

  it('a target FIN reaches a plain service as a normal close after the bytes, with no text frame', async () => {
    const accepted = await stack.client.requestStream('pi-001', 't');
    const ws = dialStream(accepted.url, accepted.authToken, stack.caPem, { extensions: [] });
    const { frames, closed } = record(ws);
    await until(() => sockets.length === 2, 'the agent to reach the target');
    sockets[1]!.end('bye');
    expect(await closed).toBe(1000);
    expect(frames).toEqual([{ text: false, data: 'bye' }]);
  });

});

/** Facing IoT Hub: a streaming endpoint that answers the upgrade without our hello header. */
describe('a streaming endpoint that does not negotiate (IoT Hub)', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('gets no text frame from our tunnel: a local end is a normal close after the bytes', async () => {
    // IoT Hub's gateway stand-in: TLS with the hub's certificate, plain WebSocket, records every frame.
    const server = createHttpsServer({ cert: readFileSync(join(stack.dir, 'server.pem')), key: readFileSync(join(stack.dir, 'server-key.pem')) });
    const wss = new WebSocketServer({ server });
    const frames: Frame[] = [];
    let announced: string | string[] | undefined;
    const closed = new Promise<number>((resolve) =>
      wss.on('connection', (peer, req) => {
        announced = req.headers[EXT_HEADER];
        peer.on('message', (d: RawData, isBinary: boolean) => frames.push({ text: !isBinary, data: d.toString() }));
        peer.on('close', (code) => resolve(code));
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const local = createServer({ allowHalfOpen: true });
    await new Promise<void>((r) => local.listen(0, '127.0.0.1', r));
    const accepted = new Promise<Socket>((r) => local.once('connection', r));
    const user = netConnect({ host: '127.0.0.1', port: (local.address() as AddressInfo).port, allowHalfOpen: true });
    const sock = await accepted;

    const ws = dialStream(`wss://127.0.0.1:${(server.address() as AddressInfo).port}/bridges/x`, 'token', stack.caPem);
    await waitOpen(ws);
    const tunnel = startTunnel(sock, ws);
    expect(tunnel.peer.known).toBe(true);
    expect(tunnel.peer.has('eof')).toBe(false);
    tunnel.sendControl({ type: 'resize', cols: 100, rows: 30 });
    user.end('abc');
    expect(await closed).toBe(1000);
    expect(frames).toEqual([{ text: false, data: 'abc' }]);
    expect(announced).toBe(STREAM_EXTENSIONS.join(','));
    expect((await tunnel.done).closeCode).toBe(1000);
    user.destroy();
    local.close();
    wss.close();
    server.close();
  });
});
