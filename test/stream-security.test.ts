import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect as mqttConnect, type MqttClient } from 'mqtt';
import type { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../agent/agent';
import { parseAgentConfig } from '../agent/config';
import { allowedStreamHosts, streamUrlRefusal } from '../agent/stream-policy';
import { dialStream } from '../core/stream-dial';
import { HubDataDir } from '../hub/data-dir';
import { DeviceRegistry } from '../hub/device-registry';
import { RateLimiter } from '../hub/rate-limit';
import { newStreamId, signStreamToken, type StreamSide } from '../hub/stream-tokens';
import {
  HEADER,
  createSasToken,
  deviceResourceUri,
  formatStreamRequestTopic,
  formatStreamResponseTopic,
  isDevstreamsError,
  mqttUsername,
  streamRequestPath,
  streamRequestSubscription,
  telemetryTopic,
} from '../wire';
import { startStack, until, type Stack } from './helpers/stack';
import { roundTrip, startEchoServer } from './helpers/targets';
import { capturingLogger } from './helpers/log-capture';

/** Opens a streaming WebSocket; resolves with the HTTP status of a refusal or the open socket. */
function dial(url: string, token: string, caPem: Buffer): Promise<{ status: number; body: string } | { ws: WebSocket }> {
  const ws = dialStream(url, token, caPem);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    ws.once('error', (err) => {
      if (!ws.listenerCount('unexpected-response')) reject(err);
    });
  });
}

function rawDevice(stack: Stack, id: string): Promise<MqttClient> {
  const key = new DeviceRegistry(new HubDataDir(stack.dir)).add(id).primary_key;
  const client = mqttConnect(`wss://${stack.hub.host}/$iothub/websocket`, {
    clientId: id,
    username: mqttUsername(stack.hub.host, id),
    password: createSasToken({ resource: deviceResourceUri(stack.hub.host, id), key, expiresAt: Math.floor(Date.now() / 1000) + 600 }),
    protocolVersion: 4,
    reconnectPeriod: 0,
    ca: stack.caPem,
  });
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

describe('stream tokens against a running hub', () => {
  let stack: Stack;
  let key: string;
  const base = (): string => `wss://${stack.hub.host}/bridges/`;
  const token = (streamId: string, side: StreamSide, expInMs = 30_000, signingKey = key): string =>
    signStreamToken(signingKey, { streamId, side, deviceId: 'pi-001', exp: Date.now() + expInMs });

  beforeAll(async () => {
    stack = await startStack();
    key = new HubDataDir(stack.dir).secrets().stream_signing_key;
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('refuses every bad token with 401 and joins nothing, then joins the rightful pair', async () => {
    const streamId = newStreamId();
    const url = base() + streamId;
    // The rightful device side waits for its partner.
    const device = await dial(url, token(streamId, 'device'), stack.caPem);
    if (!('ws' in device)) throw new Error(`device side refused: ${device.status}`);

    const otherKey = Buffer.alloc(32, 7).toString('base64');
    const serviceToken = token(streamId, 'service');
    const [, payload, sig] = serviceToken.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const sideSwapped = `dst1.${Buffer.from(JSON.stringify({ ...claims, t: 'device' })).toString('base64url')}.${sig}`;
    const otherStream = token(newStreamId(), 'service');

    const cases: Array<[string, string, RegExp]> = [
      ['forged (signed with another key)', token(streamId, 'service', 30_000, otherKey), /bad signature/],
      ['expired', token(streamId, 'service', -1000), /expired/],
      ['side changed after signing', sideSwapped, /bad signature/],
      ['for another stream', otherStream, /another stream/],
      ['reused (the device token again)', token(streamId, 'device'), /already used/],
      ['garbage', 'not-a-token', /malformed/],
    ];
    for (const [what, t, why] of cases) {
      const r = await dial(url, t, stack.caPem);
      expect('status' in r ? r.status : 'opened', what).toBe(401);
      if ('status' in r) expect(r.body, what).toMatch(why);
      expect(stack.hub.activeStreams, what).toBe(0);
    }
    // No bearer at all.
    const none = await dial(url, '', stack.caPem);
    expect('status' in none && none.status).toBe(401);

    // The rightful service side still joins, and bytes flow both ways.
    const service = await dial(url, serviceToken, stack.caPem);
    if (!('ws' in service)) throw new Error(`service side refused: ${service.status}`);
    await until(() => stack.hub.activeStreams === 1, 'the stream to join');
    const got = new Promise<Buffer>((resolve) => device.ws.on('message', (d: Buffer, isBinary: boolean) => isBinary && resolve(d)));
    device.ws.resume();
    service.ws.send(Buffer.from('hello device'));
    expect((await got).toString()).toBe('hello device');
    // Once used, the service token is spent too.
    const again = await dial(url, serviceToken, stack.caPem);
    expect('status' in again && again.status).toBe(401);
    device.ws.close();
    service.ws.close();
    await until(() => stack.hub.activeStreams === 0, 'the stream to close');
  });
});

describe('device isolation on the broker', () => {
  let stack: Stack;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    stack = await startStack();
    echo = await startEchoServer();
  });
  afterAll(async () => {
    for (const c of clients) c.end(true);
    await stack?.stop();
    await echo?.close();
  });

  it("never shows a device another device's stream requests", async () => {
    await stack.startAgent(`  echo:\n    port: ${echo.port}\n`, { deviceId: 'pi-001' });
    const spy = await rawDevice(stack, 'pi-spy');
    clients.push(spy);
    const seen: string[] = [];
    spy.on('message', (topic) => seen.push(topic));
    // Only its own stream requests are granted; everything else is refused (SUBACK 128).
    const outcome = async (topic: string): Promise<string> =>
      spy.subscribeAsync(topic).then(
        (g) => `granted ${g[0]?.qos}`,
        (err: { packet?: { granted?: number[] } }) => `refused ${err.packet?.granted?.[0]}`,
      );
    expect(await outcome('#')).toBe('refused 128');
    expect(await outcome('$iothub/#')).toBe('refused 128');
    expect(await outcome('$devstreams-device/pi-001/#')).toBe('refused 128');
    expect(await outcome(streamRequestSubscription())).toBe('granted 0');
    const connectPort = (await stack.connect('pi-001', 'echo')).address.port;
    expect((await roundTrip(connectPort, Buffer.from('ping'))).toString()).toBe('ping');
    expect(seen).toEqual([]);
  });

  it("ignores a device answering another device's request", async () => {
    // pi-slow receives its request but has not answered yet; pi-evil answers it first, as accepted.
    const slow = await rawDevice(stack, 'pi-slow');
    const evil = await rawDevice(stack, 'pi-evil');
    clients.push(slow, evil);
    await slow.subscribeAsync(streamRequestSubscription());
    const request = new Promise<string>((resolve) => slow.once('message', (topic) => resolve(topic)));
    const answer = stack.client.requestStream('pi-slow', 'ssh').catch((e: unknown) => e);
    const topic = await request;
    const rid = /\$rid=([^&]+)/.exec(topic)![1]!;
    await evil.publishAsync(formatStreamResponseTopic(200, rid), '', { qos: 1 });
    await slow.publishAsync(formatStreamResponseTopic(400, rid), JSON.stringify({ reason: 'no such service' }), { qos: 1 });
    const err = await answer;
    expect(isDevstreamsError(err, 'EDEVICE_REFUSED')).toBe(true);
  });

  it("disconnects a device that publishes to another device's topics", async () => {
    const evil = await rawDevice(stack, 'pi-evil2');
    clients.push(evil);
    const closed = new Promise<void>((resolve) => evil.once('close', () => resolve()));
    evil.publish(telemetryTopic('pi-001'), 'spoofed', { qos: 1 });
    await closed;
  });
});

describe('streaming URL policy', () => {
  const allowed = allowedStreamHosts('hub.example.com', ['streams.example.net:8443', '*.relay.example.org']);
  it.each([
    ['wss://hub.example.com/bridges/x', undefined],
    ['wss://hub.example.com:443/bridges/x', undefined],
    ['wss://streams.example.net:8443/bridges/x', undefined],
    ['wss://eu.relay.example.org/bridges/x', undefined],
    ['ws://hub.example.com/bridges/x', /scheme ws: is not wss:/],
    ['https://hub.example.com/bridges/x', /scheme https: is not wss:/],
    ['wss://user:pw@hub.example.com/bridges/x', /credentials/],
    ['wss://user@hub.example.com/bridges/x', /credentials/],
    ['wss://hub.example.com:8443/bridges/x', /not the hub/],
    ['wss://streams.example.net/bridges/x', /not the hub/],
    ['wss://127.0.0.1/bridges/x', /not the hub/],
    ['wss://[::1]/bridges/x', /not the hub/],
    ['wss://10.0.0.1.relay.example.org.evil.com/bridges/x', /not the hub/],
    ['wss://hub.example.com.evil.com/bridges/x', /not the hub/],
    ['wss://relay.example.org/bridges/x', /not the hub/],
    ['not a url', /not a valid URL/],
  ])('%s', (url, expected) => {
    const why = streamUrlRefusal(url, allowed);
    if (expected) expect(why).toMatch(expected);
    else expect(why).toBeUndefined();
  });

  it('does not follow a redirect from the streaming endpoint', async () => {
    const { createCa, issueCertificate } = await import('../hub/pki');
    const ca = createCa('redirect test CA');
    const leaf = issueCertificate(ca, { commonName: '127.0.0.1', altNames: ['127.0.0.1'], usage: 'server' });
    let followed = 0;
    const target = createHttpsServer({ key: leaf.keyPem, cert: leaf.certPem }, (_req, res) => {
      followed++;
      res.end();
    });
    target.on('upgrade', (_req, socket) => {
      followed++;
      socket.destroy();
    });
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
    const targetPort = (target.address() as AddressInfo).port;
    const redirector = createHttpsServer({ key: leaf.keyPem, cert: leaf.certPem });
    redirector.on('upgrade', (_req, socket) => {
      socket.end(`HTTP/1.1 302 Found\r\nLocation: wss://127.0.0.1:${targetPort}/bridges/elsewhere\r\nContent-Length: 0\r\n\r\n`);
    });
    await new Promise<void>((r) => redirector.listen(0, '127.0.0.1', r));
    const port = (redirector.address() as AddressInfo).port;
    const r = await dial(`wss://127.0.0.1:${port}/bridges/x`, 'dst1.a.b', Buffer.from(ca.certPem));
    expect('status' in r && r.status).toBe(302);
    expect(followed).toBe(0);
    redirector.close();
    target.close();
  });
});

describe('rate limiting of stream requests', () => {
  let stack: Stack;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;

  beforeAll(async () => {
    // Refill so slow that nothing comes back during the test.
    stack = await startStack({ hub: { rateLimits: { device: { burst: 2, perSecond: 0.0001 }, service: { burst: 4, perSecond: 0.0001 } } } });
    echo = await startEchoServer();
    await stack.startAgent(`  echo:\n    port: ${echo.port}\n`, { deviceId: 'pi-001' });
  });
  afterAll(async () => {
    await stack?.stop();
    await echo?.close();
  });

  it('answers 429 with IoT Hub’s error body per device, then per service credential', async () => {
    await stack.client.requestStream('pi-001', 'echo');
    await stack.client.requestStream('pi-001', 'echo');
    const third = await stack.client.requestStream('pi-001', 'echo').catch((e: unknown) => e);
    expect(isDevstreamsError(third, 'ETHROTTLED')).toBe(true);
    expect((third as Error).message).toMatch(/rate-limiting stream requests \(too many stream requests to device "pi-001".*retry in \d+ s/);

    // Another device still gets through (its own bucket) until the service credential's runs dry.
    new DeviceRegistry(new HubDataDir(stack.dir)).add('pi-002');
    const fourth = await stack.client.requestStream('pi-002', 'echo').catch((e: unknown) => e);
    expect(isDevstreamsError(fourth, 'EDEVICE_OFFLINE')).toBe(true);

    // The raw answer, as IoT Hub's clients parse it.
    const sas = createSasToken({
      resource: stack.hub.host,
      key: new HubDataDir(stack.dir).secrets().service_policy_key,
      keyName: 'service',
      expiresAt: Math.floor(Date.now() / 1000) + 600,
    });
    const res = await fetchWithCa(stack, streamRequestPath('pi-002', 'echo'), sas);
    expect(res.status).toBe(429);
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    const body = JSON.parse(res.body) as { errorCode: number; message: string; trackingId: string };
    expect(body.errorCode).toBe(429001);
    expect(body.message).toMatch(/for service credential "service"/);
    expect(body.trackingId).toBeTruthy();
    expect(res.headers[HEADER.url]).toBeUndefined();
  });
});

describe('a running agent refuses hostile streaming URLs and dials nothing', () => {
  let stack: Stack;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let decoy: ReturnType<typeof createHttpsServer>;
  let decoyHits = 0;
  const captured = capturingLogger('info');

  beforeAll(async () => {
    stack = await startStack();
    echo = await startEchoServer();
    // A TLS listener on another port of the hub's host: it must never see a connection.
    const { createCa, issueCertificate } = await import('../hub/pki');
    const leaf = issueCertificate(createCa('decoy CA'), { commonName: '127.0.0.1', altNames: ['127.0.0.1'], usage: 'server' });
    decoy = createHttpsServer({ key: leaf.keyPem, cert: leaf.certPem });
    decoy.on('connection', () => decoyHits++);
    await new Promise<void>((r) => decoy.listen(0, '127.0.0.1', r));
    const yaml = `hub:\n  connection_string: "${stack.deviceConnectionString('pi-policy')}"\n  ca: ${stack.caFile}\nservices:\n  echo:\n    port: ${echo.port}\n`;
    const agent = new Agent(parseAgentConfig(yaml, 'policy.yaml').config!, captured.log);
    agents.push(agent);
    await agent.start();
    await until(() => agent.connected, 'the agent to connect');
  });
  const agents: Agent[] = [];
  afterAll(async () => {
    for (const a of agents) await a.stop();
    await stack?.stop();
    await echo?.close();
    decoy?.close();
  });

  it.each([
    ['userinfo', (hub: string) => `wss://user:pw@${hub}/bridges/x`, /credentials/],
    ['another port on the hub host', () => `wss://127.0.0.1:${(decoy.address() as AddressInfo).port}/bridges/x`, /not the hub or an allowed stream host/],
    ['ws://', (hub: string) => `ws://${hub}/bridges/x`, /scheme ws: is not wss:/],
    ['another host', () => `wss://localhost:${(decoy.address() as AddressInfo).port}/bridges/x`, /not the hub or an allowed stream host/],
  ])('%s', async (_what, url, why) => {
    const rid = `hostile${Math.floor(Math.random() * 1e9)}`;
    const topic = formatStreamRequestTopic({ streamName: 'echo', requestId: rid, url: url(stack.hub.host), authToken: 'dst1.a.b' });
    expect(stack.hub.sendRawToDevice('pi-policy', topic)).toBe(true);
    await until(() => captured.lines.some((l) => l.audit === 'stream' && l.request_id === rid), 'the audit line');
    const audit = captured.lines.find((l) => l.audit === 'stream' && l.request_id === rid)!;
    expect(audit.outcome).toBe('refused');
    expect(String(audit.reason)).toMatch(why);
    expect(decoyHits).toBe(0);
  });
});

describe('RateLimiter', () => {
  it('allows the burst, then the steady rate, and says how long to wait', () => {
    let now = 1_000_000;
    const limiter = new RateLimiter({ burst: 3, perSecond: 2 }, () => now);
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([0, 0, 0]);
    expect(limiter.take('a')).toBe(1); // empty: next token in 0.5 s, rounded up to whole seconds
    expect(limiter.take('b')).toBe(0); // buckets are per key
    now += 500;
    expect(limiter.take('a')).toBe(0); // one token came back
    expect(limiter.take('a')).toBe(1);
    now += 60_000;
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([0, 0, 0, 1]); // never more than the burst
  });
});

async function fetchWithCa(stack: Stack, path: string, authorization: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const { request } = await import('node:https');
  const [host, port] = stack.hub.host.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), method: 'POST', path, ca: stack.caPem, headers: { authorization, 'content-length': '0' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end();
  });
}
