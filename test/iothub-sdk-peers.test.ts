import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, connect as netConnect, type AddressInfo, type Server, type Socket } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatHostName } from '../core/address';
import { HubDataDir } from '../hub/data-dir';
import { Hub } from '../hub/hub';
import { certificateAltNames } from '../hub/pki';
import { LINGER_MS } from '../core/tunnel';
import { streamingUrl } from '../hub/service-api';
import { isDevstreamsError } from '../wire';
import { SdkDevice, sdkServiceStream } from './helpers/sdk-peers';
import { startStack, testLogger, until, type Stack } from './helpers/stack';
import { random, roundTrip, sha256, startEchoServer } from './helpers/targets';

interface Recorded {
  data: () => Buffer;
  /** Resolves when the peer ended its side (FIN). */
  ended: Promise<void>;
  socket: Socket;
}

/** A TCP target that records what each connection receives and when it ends; optionally sends `reply` and ends. */
async function recordingTarget(reply?: Buffer): Promise<{ port: number; conns: Recorded[]; server: Server }> {
  const conns: Recorded[] = [];
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    const ended = new Promise<void>((r) => socket.on('end', () => r()));
    conns.push({ data: () => Buffer.concat(chunks), ended, socket });
    if (reply) socket.end(reply);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, conns, server };
}

/** A client of `connect` that sends `payload`, then half-closes (or fully closes), or only reads; it reads until the end. */
function client(port: number, payload: Buffer, how: 'half-close' | 'close' | 'read'): Promise<{ data: Buffer; closedAt: number }> {
  const socket = netConnect({ host: '127.0.0.1', port, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  socket.on('error', () => undefined);
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('end', () => socket.end());
  socket.on('connect', () => {
    if (how === 'read') return;
    socket.end(payload);
    if (how === 'close') socket.once('finish', () => socket.destroy());
  });
  return new Promise((resolve) => socket.on('close', () => resolve({ data: Buffer.concat(chunks), closedAt: Date.now() })));
}

/** A stream ends "within the linger": what `connect` and the agent promise for a plain peer. */
const WITHIN_LINGER_MS = LINGER_MS;

describe('the hub names streams the way IoT Hub does', () => {
  it('on 443 (here: a public name on :443) has a port-less HostName and a certificate for that name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'devstreams-test-'));
    const hub = new Hub({ dataDir: dir, listen: { host: '127.0.0.1', port: 0 }, publicHost: 'hub.devstreams.test:443', log: testLogger('hub') });
    try {
      await hub.start();
      expect(hub.host).toBe('hub.devstreams.test');
      expect(new HubDataDir(dir).settings().host_name).toBe('hub.devstreams.test');
      expect(certificateAltNames(readFileSync(join(dir, 'server.pem'), 'utf8'))).toContain('hub.devstreams.test');
    } finally {
      await hub.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('puts the port in every streaming URL, and no port in a HostName on 443', () => {
    expect(streamingUrl('hub.example.net', 'abc')).toBe('wss://hub.example.net:443/bridges/abc');
    expect(streamingUrl('hub.example.net:8443', 'abc')).toBe('wss://hub.example.net:8443/bridges/abc');
    expect(streamingUrl('[::1]', 'abc')).toBe('wss://[::1]:443/bridges/abc');
    expect(formatHostName('hub.example.net', 443)).toBe('hub.example.net');
    expect(formatHostName('hub.example.net', 8443)).toBe('hub.example.net:8443');
  });
});

/** An IoT Hub SDK-shaped device (C SDK proxy sample) behind our hub, reached with `devstreams connect`. */
describe('SDK-shaped device through connect', () => {
  let stack: Stack;
  let device: SdkDevice;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;

  beforeAll(async () => {
    stack = await startStack({ hub: { mqttListen: { host: '127.0.0.1', port: 0 } } });
    echo = await startEchoServer();
    device = await SdkDevice.connect({ connectionString: stack.deviceConnectionString('sdk-dev'), mqttPort: stack.hub.mqttPort, caPem: stack.caPem });
  });
  afterAll(async () => {
    await device?.close();
    await stack?.stop();
    await echo?.close();
  });

  it('moves bytes both ways byte-exact, the URL dialed as given (with its port), no text frame in the target', async () => {
    device.answer = { accept: true, targetPort: echo.port };
    const c = await stack.connect('sdk-dev', 'echo');
    const payload = random(2 * 1024 * 1024 + 17);
    const back = await roundTrip(c.address.port, payload);
    expect(back.length).toBe(payload.length);
    expect(sha256(back)).toBe(sha256(payload));
    const ev = device.streams.at(-1)!;
    expect(ev.dialError).toBeUndefined();
    expect(ev.url).toMatch(/^wss:\/\/[^/]+:\d+\/bridges\/[0-9a-f]+$/);
    expect(device.requestTopics.at(-1)).toMatch(/^\$iothub\/streams\/POST\/echo\/\?\$rid=/);
    expect(await ev.closed).toBe(1000);
  });

  for (const how of ['half-close', 'close'] as const) {
    it(`after the client ${how === 'close' ? 'closes' : 'half-closes'}, the target has exactly the bytes sent and the stream ends within the linger`, async () => {
      const target = await recordingTarget();
      device.answer = { accept: true, targetPort: target.port };
      const c = await stack.connect('sdk-dev', 'rec');
      const payload = random(512 * 1024 + 3);
      const sent = client(c.address.port, payload, how);
      await until(() => target.conns.length === 1, 'the device to reach its target');
      const t0 = Date.now();
      await target.conns[0]!.ended;
      expect(sha256(target.conns[0]!.data())).toBe(sha256(payload));
      expect(await device.streams.at(-1)!.closed).toBe(1000);
      const { data, closedAt } = await sent;
      expect(data.length).toBe(0);
      expect(closedAt - t0).toBeLessThan(WITHIN_LINGER_MS);
      await until(() => stack.hub.activeStreams === 0, 'the hub to end the stream');
      target.server.close();
    });
  }

  it('passes the target\'s end on: the client gets every byte, then its end', async () => {
    const reply = random(300 * 1024);
    const target = await recordingTarget(reply);
    device.answer = { accept: true, targetPort: target.port };
    const c = await stack.connect('sdk-dev', 'talker');
    const { data } = await client(c.address.port, Buffer.alloc(0), 'read');
    expect(sha256(data)).toBe(sha256(reply));
    expect(await device.streams.at(-1)!.closed).toBe(1000);
    expect(target.conns[0]!.data().length).toBe(0);
    target.server.close();
  });

  it('reports a refusal with an empty payload as "the device refused the stream (it gave no reason)"', async () => {
    device.answer = { accept: false };
    const err = await stack.client.requestStream('sdk-dev', 'ssh').catch((e: unknown) => e);
    expect(isDevstreamsError(err, 'EDEVICE_REFUSED')).toBe(true);
    expect((err as Error).message).toMatch(/the device refused the stream \(it gave no reason\)/);
    expect((err as Error).message).not.toMatch(/allow/);
  });
});

/** An IoT Hub SDK-shaped service (raw REST + WebSocket, no extension header) against our agent. */
describe('SDK-shaped service against our agent', () => {
  let stack: Stack;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let rec: Awaited<ReturnType<typeof recordingTarget>>;
  let talker: Awaited<ReturnType<typeof recordingTarget>>;
  const reply = random(200 * 1024 + 5);
  const open = (streamName: string, moduleId?: string) =>
    sdkServiceStream({
      serviceConnectionString: stack.serviceConnectionString,
      hubAddress: { host: '127.0.0.1', port: stack.hub.port },
      caPem: stack.caPem,
      deviceId: 'pi-001',
      streamName,
      ...(moduleId ? { moduleId } : {}),
    });

  beforeAll(async () => {
    stack = await startStack();
    echo = await startEchoServer();
    rec = await recordingTarget();
    talker = await recordingTarget(reply);
    await stack.startAgent(`  echo:\n    port: ${echo.port}\n  rec:\n    port: ${rec.port}\n  talker:\n    port: ${talker.port}\n`);
  });
  afterAll(async () => {
    await stack?.stop();
    await echo?.close();
    rec?.server.close();
    talker?.server.close();
  });

  it('moves bytes both ways byte-exact and never sends a text frame', async () => {
    const s = await open('echo');
    if (!s.accepted) throw new Error('refused');
    expect(s.url).toMatch(/^wss:\/\/[^/]+:\d+\/bridges\//);
    const payload = random(1024 * 1024 + 9);
    for (let off = 0; off < payload.length; off += 65536) s.ws.send(payload.subarray(off, off + 65536), { binary: true });
    await until(() => s.frames.reduce((n, f) => n + f.data.length, 0) >= payload.length, 'the echo');
    expect(s.frames.filter((f) => f.text)).toEqual([]);
    expect(sha256(Buffer.concat(s.frames.map((f) => f.data)))).toBe(sha256(payload));
    s.ws.close(1000);
    expect(await s.closed).toBe(1000);
  });

  it('after the service closes, the target has exactly the bytes sent and its connection ends within the linger', async () => {
    const s = await open('rec');
    if (!s.accepted) throw new Error('refused');
    await until(() => rec.conns.length === 1, 'the agent to reach the target');
    const payload = random(700 * 1024);
    for (let off = 0; off < payload.length; off += 65536) s.ws.send(payload.subarray(off, off + 65536), { binary: true });
    s.ws.close(1000);
    const t0 = Date.now();
    await rec.conns[0]!.ended;
    expect(Date.now() - t0).toBeLessThan(WITHIN_LINGER_MS);
    expect(sha256(rec.conns[0]!.data())).toBe(sha256(payload));
    expect(await s.closed).toBe(1000);
  });

  it('when the target ends, the service gets every byte and then a normal close, no text frame', async () => {
    const s = await open('talker');
    if (!s.accepted) throw new Error('refused');
    expect(await s.closed).toBe(1000);
    expect(s.frames.filter((f) => f.text)).toEqual([]);
    expect(sha256(Buffer.concat(s.frames.map((f) => f.data)))).toBe(sha256(reply));
  });

  it('a refusal is IoT Hub\'s 200 with is-accepted False', async () => {
    const s = await open('nosuch');
    expect(s.accepted).toBe(false);
  });

  it('refuses a module stream (no modules here) with IoT Hub\'s ArgumentInvalid, instead of handing it to the device', async () => {
    await expect(open('echo', 'm1')).rejects.toThrow(/HTTP 400 .*400004.*module streams are not supported/);
  });
});
