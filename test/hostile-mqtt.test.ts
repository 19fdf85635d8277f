import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as mqttConnect, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastLine, runCliToEnd, startHubProcess, type CliProcess } from './helpers/cli';
import { exchange, healthz, holdConnections, mqttLength, rssBytes, upgradeRequest, wsFrame } from './helpers/hostile';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { createSasToken, deviceResourceUri, mqttUsername, parseDeviceConnectionString, parseServiceConnectionString } from '../wire';

const MiB = 1024 * 1024;

/** A CONNECT fixed header announcing `length` bytes, followed by `body` (the rest never comes). */
function connectAnnouncing(length: number, body = Buffer.alloc(0)): Buffer {
  return Buffer.concat([Buffer.from([0x10]), mqttLength(length), body]);
}

/**
 * Each MQTT finding of issue 11 against the real hub process (MQTT over WebSocket on the HTTPS port,
 * MQTT over TLS on --mqtt-listen): oversized packets are cut at their length field before anything is
 * buffered, a connection that never sends CONNECT is closed, unauthenticated connections are capped,
 * and the broker keeps nothing for devices (retained publishes refused).
 */
describe('hostile input on the MQTT surfaces', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-hostile-mqtt-'));
  const dataDir = join(dir, 'hub');
  let hub: CliProcess & { port: number };
  let mqttPort = 0;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    hub = await startHubProcess(dataDir, 0, { args: ['--mqtt-listen', '127.0.0.1:0'], env: { DEVSTREAMS_LOG_LEVEL: 'debug' } });
    const line = await hub.waitForLine(/MQTT over TLS listening/);
    mqttPort = Number(/"mqtt_listen":"[^"]*:(\d+)"/.exec(line)![1]);
  });
  afterAll(async () => {
    for (const c of clients) c.end(true);
    await hub?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function device(id: string): Promise<MqttClient> {
    const cs = parseDeviceConnectionString(lastLine((await runCliToEnd(['hub', 'add-device', id, '--data-dir', dataDir])).stdout));
    const host = cs.hostName;
    const client = mqttConnect(`mqtts://127.0.0.1:${mqttPort}`, {
      clientId: id,
      username: mqttUsername(host, id),
      password: createSasToken({ resource: deviceResourceUri(host, id), key: cs.sharedAccessKey!, expiresAt: Math.floor(Date.now() / 1000) + 600 }),
      protocolVersion: 4,
      reconnectPeriod: 0,
      rejectUnauthorized: false,
    });
    clients.push(client);
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    return client;
  }

  it('MQTT/TLS: a CONNECT announcing 256 MiB is cut at its length field; RSS stays put', async () => {
    const before = rssBytes(hub.proc.pid!);
    const oneMiB = Buffer.alloc(MiB, 0x61);
    const results = await Promise.all(
      [0, 1].map(() => exchange(mqttPort, [connectAnnouncing(256 * MiB - 1), oneMiB, oneMiB], { waitMs: 20_000 })),
    );
    for (const r of results) expect(r.closed).toBe(true);
    await hub.waitForLine(/MQTT connection cut: packet announces 268435455 bytes/);
    // Before the guard: +210 MiB per connection, never given back.
    expect(rssBytes(hub.proc.pid!) - before).toBeLessThan(40 * MiB);
    expect(await healthz(hub.port)).toBe(200);
  });

  it('MQTT over WebSocket: a CONNECT announcing 256 MiB over small frames is cut; a 200 MiB frame is refused', async () => {
    const before = rssBytes(hub.proc.pid!);
    const frames = [upgradeRequest('/$iothub/websocket', { 'sec-websocket-protocol': 'mqtt' }), wsFrame(connectAnnouncing(256 * MiB - 1, Buffer.alloc(1000, 0x61)))];
    for (let i = 0; i < 64; i++) frames.push(wsFrame(Buffer.alloc(16 * 1024, 0x61)));
    const cut = await exchange(hub.port, frames, { waitMs: 20_000 });
    expect(cut.closed).toBe(true);
    const big = await exchange(hub.port, [upgradeRequest('/$iothub/websocket', { 'sec-websocket-protocol': 'mqtt' }), wsFrame(Buffer.alloc(MiB, 0x61), { announce: 200 * MiB })], { waitMs: 20_000 });
    expect(big.closed).toBe(true);
    // ws refuses the frame at its header (close 1009), or the pre-authentication byte count cuts first.
    await hub.waitForLine(/Max payload size exceeded|WebSocket bytes before authentication/);
    expect(rssBytes(hub.proc.pid!) - before).toBeLessThan(40 * MiB);
  });

  it('MQTT over WebSocket: an unfinished 250 KiB message before CONNECT is cut at 32 KiB, not buffered', async () => {
    const started = Date.now();
    const frameHead = wsFrame(Buffer.alloc(0), { announce: 250 * 1024 }); // header and mask; the payload follows, never completed
    const r = await exchange(hub.port, [upgradeRequest('/$iothub/websocket', { 'sec-websocket-protocol': 'mqtt' }), Buffer.concat([frameHead, Buffer.alloc(64 * 1024, 0x61)])], { waitMs: 20_000 });
    expect(r.closed).toBe(true);
    // Well before the 10 s CONNECT deadline: the byte count cut it.
    expect(Date.now() - started).toBeLessThan(8_000);
    await hub.waitForLine(/MQTT connection cut: more than 32768 WebSocket bytes before authentication/);
  });

  it('a connection that never sends CONNECT is closed after the CONNECT deadline', async () => {
    const started = Date.now();
    const [tls, ws] = await Promise.all([
      exchange(mqttPort, [], { waitMs: 40_000 }),
      exchange(hub.port, [upgradeRequest('/$iothub/websocket', { 'sec-websocket-protocol': 'mqtt' })], { waitMs: 40_000 }),
    ]);
    expect(tls.closed).toBe(true);
    expect(ws.closed).toBe(true);
    // MQTT_CONNECT_TIMEOUT_MS is 10 s (aedes' default was 30 s).
    expect(Date.now() - started).toBeLessThan(25_000);
  }, 60_000);

  it('caps unauthenticated connections per address; another address still gets in', async () => {
    const held = await holdConnections(hub.port, 256);
    try {
      const over = await exchange(hub.port, [], { tls: false, waitMs: 10_000 });
      expect(over.closed).toBe(true);
      await hub.waitForLine(/too many unauthenticated connections/);
      // A second loopback address is another remote address.
      const other = await exchange(hub.port, ['GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n'], { localAddress: '127.0.0.2' });
      expect(other.data.toString()).toMatch(/^HTTP\/1\.1 200/);
    } finally {
      for (const s of held) s.destroy();
    }
    // Once they are gone, the address gets in again.
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) status = await healthz(hub.port).catch(() => 0);
    expect(status).toBe(200);
  });

  it('authenticated connections leave the cap: 300 service connections from one address stay open, a new one still gets in', async () => {
    const svc = parseServiceConnectionString(lastLine((await runCliToEnd(['hub', 'service-string', '--data-dir', dataDir])).stdout));
    const auth = createSasToken({ resource: svc.hostName, key: svc.sharedAccessKey, keyName: svc.sharedAccessKeyName, expiresAt: Math.floor(Date.now() / 1000) + 600 });
    const held: TLSSocket[] = [];
    const authorizedConnection = async (): Promise<void> => {
      const s = tlsConnect({ port: hub.port, host: '127.0.0.1', rejectUnauthorized: false });
      held.push(s);
      const first = await new Promise<string>((resolve, reject) => {
        s.once('secureConnect', () => s.write(`GET /devices HTTP/1.1\r\nHost: hub\r\nAuthorization: ${auth}\r\n\r\n`));
        s.once('data', (d: Buffer) => resolve(d.toString('latin1')));
        s.once('error', reject);
      });
      expect(first).toMatch(/^HTTP\/1\.1 200/);
    };
    try {
      // In batches well under the cap: each leaves it once its request is authorized.
      for (let i = 0; i < 300; i += 25) await Promise.all(Array.from({ length: 25 }, authorizedConnection));
      // 300 open keep-alive connections from 127.0.0.1, and the 256 per address cap does not bite.
      expect(await healthz(hub.port)).toBe(200);
      expect(held.every((s) => !s.destroyed)).toBe(true);
    } finally {
      for (const s of held) s.destroy();
    }
  });

  it('refuses a retained publish (disconnects), and nothing retained reaches another device', async () => {
    const a = await device('retain-a');
    const closed = new Promise<void>((r) => a.once('close', () => r()));
    a.publish('devices/retain-a/messages/events/', Buffer.alloc(1000), { retain: true, qos: 0 });
    await closed;
    await hub.waitForLine(/retained publish/);
    const b = await device('retain-b');
    const got: string[] = [];
    b.on('message', (topic) => got.push(topic));
    await new Promise<void>((resolve, reject) => b.subscribe('$iothub/streams/POST/#', (err) => (err ? reject(err) : resolve())));
    // A retained message would arrive right after SUBACK; a ping round trip later, none has.
    await new Promise<void>((r) => b.publish('devices/retain-b/messages/events/', 'x', () => r()));
    expect(got).toEqual([]);
  });

  it('a device may publish up to 256 KiB; a bigger packet disconnects it', async () => {
    const c = await device('big-publisher');
    await new Promise<void>((resolve, reject) => c.publish('devices/big-publisher/messages/events/', Buffer.alloc(256 * 1024), { qos: 1 }, (err) => (err ? reject(err) : resolve())));
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    c.publish('devices/big-publisher/messages/events/', Buffer.alloc(300 * 1024), { qos: 0 });
    await closed;
    await hub.waitForLine(/MQTT connection cut: packet announces \d+ bytes, limit 270336/);
  });
});

describe('--unauthenticated-max', () => {
  it('sets the caps: over the per-address cap a connection is closed at once, another address gets in', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'devstreams-hostile-caps-'));
    const hub = await startHubProcess(join(dir, 'hub'), 0, { args: ['--unauthenticated-max', '3/2'] });
    const held = await holdConnections(hub.port, 2);
    try {
      expect((await exchange(hub.port, [], { tls: false, waitMs: 10_000 })).closed).toBe(true);
      const other = await exchange(hub.port, ['GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n'], { localAddress: '127.0.0.3' });
      expect(other.data.toString()).toMatch(/^HTTP\/1\.1 200/);
    } finally {
      for (const s of held) s.destroy();
      await hub.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a malformed value with exit 64', async () => {
    const r = await runCliToEnd(['hub', '--data-dir', tmpdir(), '--unauthenticated-max', '5/10']);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain('--unauthenticated-max wants TOTAL/PER_ADDRESS');
  });
});
