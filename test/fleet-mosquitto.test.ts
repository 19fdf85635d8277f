import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../agent/agent';
import { HubDataDir } from '../hub/data-dir';
import { DeviceRegistry } from '../hub/device-registry';
import { Hub } from '../hub/hub';
import { Connect } from '../service/connect';
import { HubClient } from '../service/hub-client';
import { formatDeviceConnectionString, isDevstreamsError } from '../wire';
import { freePort } from './helpers/free-port';
import { startMosquitto, type Mosquitto } from './helpers/mosquitto';
import { testLogger, until } from './helpers/stack';
import { fleetAgentYaml, serviceClientFor, startFleetAgent } from './helpers/fleet';
import { random, roundTrip, sha256, startEchoServer } from './helpers/targets';

/**
 * Fleet mode against Debian's mosquitto running our shipped config and ACL: devices connect to the
 * broker, two hub instances share it (and the data dir's secrets), and the ACL keeps every device
 * to its own topics. Everything is real: mosquitto, TLS, the hubs, the agent, the service client.
 */
const HUB_USER = 'devstreams-hub';
const PASSWORDS = { [HUB_USER]: 'hub-secret', dev1: 'dev1-secret', dev2: 'dev2-secret' };

describe('fleet mode on mosquitto: ACLs, two hub instances', () => {
  let broker: Mosquitto;
  let dirA: string;
  let dirB: string;
  let hubA: Hub;
  let hubB: Hub;
  let clientA: HubClient;
  let clientB: HubClient;
  let agent: Agent;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  const raw: MqttClient[] = [];
  const connects: Connect[] = [];

  const startHub = async (dataDir: string, port: number, streamingPort: number, instanceId: string): Promise<Hub> => {
    const hub = new Hub({
      dataDir,
      listen: { host: '127.0.0.1', port },
      streamingHost: `127.0.0.1:${streamingPort}`,
      instanceId,
      externalBroker: { url: `mqtt://127.0.0.1:${broker.hubPort}`, username: HUB_USER, password: PASSWORDS[HUB_USER] },
      log: testLogger(`hub-${instanceId}`),
    });
    await hub.start();
    return hub;
  };

  /** A device's raw MQTT connection to the broker's device listener (TLS), as a misbehaving device would open it. */
  const rawDevice = async (username: string, password: string, clientId = username): Promise<MqttClient> => {
    const c = await connectAsync(`mqtts://127.0.0.1:${broker.devicePort}`, { clientId, username, password, ca: broker.caPem, protocolVersion: 4, reconnectPeriod: 0 });
    raw.push(c);
    return c;
  };

  beforeAll(async () => {
    broker = await startMosquitto(PASSWORDS);
    dirA = mkdtempSync(join(tmpdir(), 'devstreams-fleet-a-'));
    dirB = mkdtempSync(join(tmpdir(), 'devstreams-fleet-b-'));
    const [portA, portB] = [await freePort(), await freePort()];
    // Each instance names the other's streaming endpoint: every stream crosses instances.
    hubA = await startHub(dirA, portA, portB, 'a');
    // Instance B shares A's secrets and CA (a copy; a shared volume works the same).
    mkdirSync(dirB, { recursive: true });
    for (const f of ['secrets.json', 'ca.pem', 'ca-key.pem']) copyFileSync(join(dirA, f), join(dirB, f));
    hubB = await startHub(dirB, portB, portA, 'b');

    clientA = serviceClientFor(hubA.host, dirA);
    clientB = serviceClientFor(hubB.host, dirA);

    echo = await startEchoServer();
    const key = new DeviceRegistry(new HubDataDir(dirA)).add('dev1').primary_key;
    const passwordFile = join(broker.dir, 'dev1.password');
    writeFileSync(passwordFile, `${PASSWORDS.dev1}\n`, { mode: 0o600 });
    agent = await startFleetAgent(
      fleetAgentYaml({
        connectionString: formatDeviceConnectionString({ hostName: hubA.host, deviceId: 'dev1', sharedAccessKey: key }),
        hubCa: join(dirA, 'ca.pem'),
        streamHosts: [hubB.host],
        brokerUrl: `mqtts://127.0.0.1:${broker.devicePort}`,
        passwordFile,
        brokerCa: broker.caFile,
        services: { echo: echo.port },
      }),
    );
    await until(() => agent.connected, 'agent to connect to mosquitto');
    await until(async () => (await clientA.listDevices().catch(() => [])).some((d) => d.deviceId === 'dev1' && d.connectionState === 'Connected'), 'hub A to see dev1 online');
  }, 60_000);

  afterAll(async () => {
    for (const c of connects) await c.stop();
    for (const c of raw) c.end(true);
    await agent?.stop();
    clientA?.close();
    clientB?.close();
    await hubA?.stop();
    await hubB?.stop();
    await echo?.close();
    await broker?.stop();
    for (const d of [dirA, dirB]) if (d) rmSync(d, { recursive: true, force: true });
  });

  const connectVia = async (client: HubClient): Promise<number> => {
    const c = new Connect({ client, deviceId: 'dev1', service: 'echo', listen: { host: '127.0.0.1', port: 0 }, log: testLogger('connect') });
    await c.start();
    connects.push(c);
    return c.address.port;
  };

  it('streams end to end: requested at hub A, joined at hub B, 1 MiB byte-exact', async () => {
    const accepted = await clientA.requestStream('dev1', 'echo');
    expect(new URL(accepted.url).host).toBe(hubB.host);
    const port = await connectVia(clientA);
    const payload = random(1024 * 1024);
    expect(sha256(await roundTrip(port, payload))).toBe(sha256(payload));
  });

  it('and the reverse: requested at hub B, joined at hub A', async () => {
    const accepted = await clientB.requestStream('dev1', 'echo');
    expect(new URL(accepted.url).host).toBe(hubA.host);
    const port = await connectVia(clientB);
    const payload = random(256 * 1024);
    expect(sha256(await roundTrip(port, payload))).toBe(sha256(payload));
  });

  it('a hub instance that starts later learns who is online from the retained status, and serves', async () => {
    const dirC = mkdtempSync(join(tmpdir(), 'devstreams-fleet-c-'));
    for (const f of ['secrets.json', 'ca.pem', 'ca-key.pem']) copyFileSync(join(dirA, f), join(dirC, f));
    const hubC = await startHub(dirC, await freePort(), Number(hubA.host.split(':')[1]), 'c');
    try {
      // The retained status arrives right after the SUBACK: the device says nothing new meanwhile.
      await until(() => hubC.isDeviceOnline('dev1'), 'hub C to read the retained status', 5000);
      const clientC = serviceClientFor(hubC.host, dirA);
      try {
        const accepted = await clientC.requestStream('dev1', 'echo');
        expect(new URL(accepted.url).host).toBe(hubA.host);
      } finally {
        clientC.close();
      }
    } finally {
      await hubC.stop();
      rmSync(dirC, { recursive: true, force: true });
    }
  });

  it("the device's health telemetry reaches every hub through the broker", async () => {
    for (const client of [clientA, clientB]) {
      await until(async () => (await client.listDevices()).some((d) => d.deviceId === 'dev1' && d.health !== null), 'health of dev1 at a hub');
    }
  });

  it('a device refusal travels back through the broker', async () => {
    const err = await clientB.requestStream('dev1', 'not-allowed').catch((e: unknown) => e);
    expect(isDevstreamsError(err, 'EDEVICE_REFUSED')).toBe(true);
  });

  it('the broker refuses a wrong password', async () => {
    const err = await connectAsync(`mqtts://127.0.0.1:${broker.devicePort}`, { clientId: 'dev1', username: 'dev1', password: 'wrong', ca: broker.caPem, reconnectPeriod: 0 }).catch((e: unknown) => e);
    expect((err as { code?: number }).code).toBe(5);
  });

  it("a device cannot read another device's requests: the broker delivers nothing", async () => {
    const dev2 = await rawDevice('dev2', PASSWORDS.dev2);
    const got: string[] = [];
    dev2.on('message', (topic) => got.push(topic));
    // mosquitto 2.0.11 grants these SUBSCRIBEs (SUBACK QoS 0, also with MQTT 5) and applies the read
    // ACL to every message it would deliver: what counts is that nothing arrives.
    await dev2.subscribeAsync(['devstreams/dev1/streams/POST/#', 'devstreams/+/streams/POST/#', '#', 'devstreams/dev1/streams/res/#', 'devstreams/+/status'], { qos: 0 });
    const own = await dev2.subscribeAsync('devstreams/dev2/streams/POST/#', { qos: 0 });
    expect(own[0]!.qos).toBe(0);
    // A request to dev1 goes out (the agent accepts it) ...
    await clientA.requestStream('dev1', 'echo');
    // ... then one to dev2, which dev2 must hear first: the broker keeps one publisher's order.
    await dev2.publishAsync('devstreams/dev2/status', 'online', { qos: 1, retain: true });
    await until(() => hubA.isDeviceOnline('dev2'), 'hub A to see dev2 online');
    const pending = clientA.requestStream('dev2', 'anything').catch((e: unknown) => e);
    await until(() => got.length > 0, 'dev2 to get its own request');
    // (its own request may come twice: once per matching subscription, `#` and its own)
    for (const topic of got) expect(topic).toMatch(/^devstreams\/dev2\/streams\/POST\/anything\//);
    const rid = /\$rid=([^&]+)/.exec(got[0]!)![1]!;
    expect(rid).toMatch(/^a-\d+$/);
    await dev2.publishAsync(`devstreams/dev2/streams/res/400/?$rid=${rid}`, '', { qos: 0 });
    expect(isDevstreamsError(await pending, 'EDEVICE_REFUSED')).toBe(true);
  });

  it("a device cannot publish another device's responses or status: the hubs never see them", async () => {
    const dev2 = await rawDevice('dev2', PASSWORDS.dev2, 'dev2-forger');
    const observer = await connectAsync(`mqtt://127.0.0.1:${broker.hubPort}`, { clientId: 'test-observer', username: HUB_USER, password: PASSWORDS[HUB_USER], reconnectPeriod: 0 });
    raw.push(observer);
    const seen: string[] = [];
    observer.on('message', (topic, payload, packet) => {
      if (!packet.retain) seen.push(`${topic} ${payload.toString()}`);
    });
    await observer.subscribeAsync(['devstreams/+/streams/res/#', 'devstreams/+/status'], { qos: 1 });
    await dev2.publishAsync('devstreams/dev1/streams/res/200/?$rid=a-1', '', { qos: 1 });
    await dev2.publishAsync('devstreams/dev1/status', 'offline', { qos: 1, retain: true });
    await dev2.publishAsync('devstreams/dev2/streams/res/400/?$rid=barrier', '', { qos: 1 });
    await until(() => seen.length > 0, 'the barrier message');
    expect(seen).toEqual(['devstreams/dev2/streams/res/400/?$rid=barrier ']);
    expect(hubA.isDeviceOnline('dev1')).toBe(true);
    expect(hubB.isDeviceOnline('dev1')).toBe(true);
  });

  it('a stream name with # or + gets 400 (ArgumentInvalid) and the hub stays on the broker', async () => {
    // Before names were checked, `#` in a topic made mosquitto drop the hub: every device looked offline.
    for (const name of ['a#b', 'x+y', '#', '$SYS', 'a/b']) {
      const err = await clientA.requestStream('dev1', name).catch((e: unknown) => e);
      expect(isDevstreamsError(err, 'EHUB_ERROR'), `stream name ${JSON.stringify(name)}`).toBe(true);
      expect((err as Error).message).toMatch(/400 \(400004\)/);
    }
    expect(hubA.isDeviceOnline('dev1')).toBe(true);
    const port = await connectVia(clientA);
    const payload = random(4096);
    expect(sha256(await roundTrip(port, payload))).toBe(sha256(payload));
  });

  it('the broker disconnects a device that sends a packet over 264 KiB (shipped max_packet_size); the hubs stay', async () => {
    const dev2 = await rawDevice('dev2', PASSWORDS.dev2, 'dev2-big');
    const closed = new Promise<void>((r) => dev2.once('close', () => r()));
    dev2.publish('devstreams/dev2/messages/events/', Buffer.alloc(300 * 1024), { qos: 0 });
    await closed;
    expect(hubA.isDeviceOnline('dev1')).toBe(true);
    const payload = random(4096);
    expect(sha256(await roundTrip(await connectVia(clientA), payload))).toBe(sha256(payload));
  });

  it("a device cannot take over another device's session by using its client id", async () => {
    // use_username_as_clientid: "dev1" becomes "dev2", so the real dev1 stays connected.
    await rawDevice('dev2', PASSWORDS.dev2, 'dev1');
    const port = await connectVia(clientB);
    const payload = random(4096);
    expect(sha256(await roundTrip(port, payload))).toBe(sha256(payload));
    expect(agent.connected).toBe(true);
  });

  it('a device whose connection dies is marked offline by its Last Will, on every hub', async () => {
    const dev2 = await rawDevice('dev2', PASSWORDS.dev2);
    dev2.end(true);
    const lwt = await connectAsync(`mqtts://127.0.0.1:${broker.devicePort}`, {
      clientId: 'dev2',
      username: 'dev2',
      password: PASSWORDS.dev2,
      ca: broker.caPem,
      reconnectPeriod: 0,
      will: { topic: 'devstreams/dev2/status', payload: Buffer.from('offline'), qos: 1, retain: true },
    });
    raw.push(lwt);
    await lwt.publishAsync('devstreams/dev2/status', 'online', { qos: 1, retain: true });
    await until(() => hubA.isDeviceOnline('dev2') && hubB.isDeviceOnline('dev2'), 'both hubs to see dev2 online');
    // Cut the TCP connection without DISCONNECT: mosquitto publishes the will.
    lwt.stream.destroy();
    await until(() => !hubA.isDeviceOnline('dev2') && !hubB.isDeviceOnline('dev2'), 'both hubs to see dev2 offline');
    const err = await clientA.requestStream('dev2', 'echo').catch((e: unknown) => e);
    expect(isDevstreamsError(err, 'EDEVICE_OFFLINE')).toBe(true);
  });

  it('an agent that stops says offline itself (a clean disconnect sends no will)', async () => {
    await agent.stop();
    await until(() => !hubA.isDeviceOnline('dev1') && !hubB.isDeviceOnline('dev1'), 'both hubs to see dev1 offline');
  });
});
