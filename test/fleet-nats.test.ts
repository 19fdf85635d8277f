import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../agent/agent';
import { Hub } from '../hub/hub';
import { Connect } from '../service/connect';
import { HubClient } from '../service/hub-client';
import { isDevstreamsError } from '../wire';
import { startNatsCluster, type NatsCluster } from './helpers/nats-cluster';
import { testLogger, until } from './helpers/stack';
import { fleetAgentYaml, fleetDeviceConnectionString, serviceClientFor, startFleetAgent, startFleetHub } from './helpers/fleet';
import { random, roundTrip, sha256, startEchoServer } from './helpers/targets';

/**
 * A clustered broker Debian ships: three nats-server 2.9.10 nodes (JetStream, MQTT listener) on
 * loopback, configured from config/nats/. The device connects to node 1, the hub to node 2; the
 * stream request, the answer, the retained status and the Last Will all cross the cluster.
 */
const HUB_PASSWORD = 'hub-secret';
const DEVICES = { dev1: 'dev1-secret', dev2: 'dev2-secret' };

describe('fleet mode on a three-node NATS cluster', () => {
  let cluster: NatsCluster;
  let dir: string;
  let hub: Hub;
  let client: HubClient;
  let agent: Agent;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  const raw: MqttClient[] = [];
  let connect: Connect | undefined;

  beforeAll(async () => {
    cluster = await startNatsCluster(HUB_PASSWORD, DEVICES);
    const [node1, node2] = cluster.nodes as [NatsCluster['nodes'][0], NatsCluster['nodes'][0]];
    dir = mkdtempSync(join(tmpdir(), 'devstreams-fleet-nats-'));
    hub = await startFleetHub(dir, `mqtt://127.0.0.1:${node2.mqttPort}`, HUB_PASSWORD, { externalBroker: { url: `mqtt://127.0.0.1:${node2.mqttPort}`, username: 'devstreams-hub', password: HUB_PASSWORD, connectTimeoutMs: 90_000 } });
    client = serviceClientFor(hub.host, dir);
    echo = await startEchoServer();
    const passwordFile = join(dir, 'dev1.password');
    writeFileSync(passwordFile, `${DEVICES.dev1}\n`, { mode: 0o600 });
    agent = await startFleetAgent(
      fleetAgentYaml({
        connectionString: fleetDeviceConnectionString(hub, dir, 'dev1'),
        hubCa: join(dir, 'ca.pem'),
        brokerUrl: `mqtt://127.0.0.1:${node1.mqttPort}`,
        passwordFile,
        services: { echo: echo.port },
      }),
    );
    await until(() => agent.connected, 'agent to connect to node 1', 60_000);
    await until(() => hub.isDeviceOnline('dev1'), 'hub on node 2 to see dev1 online', 60_000);
  }, 180_000);

  afterAll(async () => {
    await connect?.stop();
    for (const c of raw) c.end(true);
    await agent?.stop();
    client?.close();
    await hub?.stop();
    await echo?.close();
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('streams end to end: device on node 1, hub on node 2, 1 MiB byte-exact', async () => {
    connect = new Connect({ client, deviceId: 'dev1', service: 'echo', listen: { host: '127.0.0.1', port: 0 }, log: testLogger('connect') });
    await connect.start();
    const payload = random(1024 * 1024);
    expect(sha256(await roundTrip(connect.address.port, payload))).toBe(sha256(payload));
  }, 60_000);

  it("refuses a device the subscriptions to other devices' requests, and delivers nothing", async () => {
    const node3 = cluster.nodes[2]!;
    const dev2 = await connectAsync(`mqtt://127.0.0.1:${node3.mqttPort}`, { clientId: 'dev2', username: 'dev2', password: DEVICES.dev2, protocolVersion: 4, reconnectPeriod: 0 });
    raw.push(dev2);
    const got: string[] = [];
    dev2.on('message', (t) => got.push(t));
    const suback = (filters: string[]): Promise<number[]> =>
      new Promise((resolve) => dev2.subscribe(filters, { qos: 0 }, (err, g) => resolve((g ?? (err as { packet?: { granted?: number[] } } | null)?.packet?.granted ?? []).map((x) => (typeof x === 'number' ? x : x.qos)))));
    // NATS 2.9.10 refuses these (it logs a Subscription Violation) but its SUBACK does not reliably
    // say so (we saw both 0x80 and 0): the proof is the server's refusal and that nothing arrives.
    await suback(['devstreams/dev1/streams/POST/#']);
    await suback(['devstreams/+/streams/POST/#', '#']);
    const violations = (): string[] => cluster.nodes.flatMap((n) => n.log.filter((l) => l.includes('Subscription Violation - User "dev2"')));
    await until(() => violations().some((l) => l.includes('"devstreams.dev1.streams.POST.>"')) && violations().some((l) => l.includes('"devstreams.*.streams.POST.>"')), 'NATS to refuse the subscriptions', 30_000);
    expect(await suback(['devstreams/dev2/streams/POST/#'])).toEqual([0]);
    // A request to dev1, then one to dev2: dev2 must hear its own and nothing before it.
    await client.requestStream('dev1', 'echo');
    await dev2.publishAsync('devstreams/dev2/status', 'online', { qos: 1, retain: true });
    await until(() => hub.isDeviceOnline('dev2'), 'hub to see dev2 online', 30_000);
    const pending = client.requestStream('dev2', 'anything').catch((e: unknown) => e);
    await until(() => got.length > 0, 'dev2 to get its own request', 30_000);
    for (const topic of got) expect(topic).toMatch(/^devstreams\/dev2\/streams\/POST\/anything\//);
    const rid = /\$rid=([^&]+)/.exec(got[0]!)![1]!;
    await dev2.publishAsync(`devstreams/dev2/streams/res/400/?$rid=${rid}`, '', { qos: 0 });
    expect(isDevstreamsError(await pending, 'EDEVICE_REFUSED')).toBe(true);
  }, 60_000);

  it('the Last Will crosses the cluster: a cut device is offline at the hub', async () => {
    const node3 = cluster.nodes[2]!;
    const dev2 = await connectAsync(`mqtt://127.0.0.1:${node3.mqttPort}`, {
      clientId: 'dev2-will',
      clean: true,
      username: 'dev2',
      password: DEVICES.dev2,
      protocolVersion: 4,
      reconnectPeriod: 0,
      will: { topic: 'devstreams/dev2/status', payload: Buffer.from('offline'), qos: 1, retain: true },
    });
    raw.push(dev2);
    await dev2.publishAsync('devstreams/dev2/status', 'online', { qos: 1, retain: true });
    await until(() => hub.isDeviceOnline('dev2'), 'hub to see dev2 online', 30_000);
    dev2.stream.destroy();
    await until(() => !hub.isDeviceOnline('dev2'), 'hub to see dev2 offline', 30_000);
  }, 60_000);
});
