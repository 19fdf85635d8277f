import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent';
import { Hub } from '../hub/hub';
import type { HubClient } from '../service/hub-client';
import { isDevstreamsError } from '../wire';
import { fleetAgentYaml, fleetDeviceConnectionString, serviceClientFor, startFleetAgent, startFleetHub } from './helpers/fleet';
import { startMosquitto, type Mosquitto } from './helpers/mosquitto';
import { testLogger, until } from './helpers/stack';
import { random, roundTrip, sha256, startEchoServer } from './helpers/targets';
import { Connect } from '../service/connect';

/**
 * The broker crashes (SIGKILL, no persistence: every retained status is gone) and comes back on the
 * same port: the hub and the agent reconnect on their own, the device announces itself again, and
 * streams work as before. Meanwhile the hub answers "not online" instead of hanging.
 */
describe('fleet mode: the broker crashes and comes back', () => {
  let broker: Mosquitto;
  let dir: string;
  let hub: Hub;
  let client: HubClient;
  let agent: Agent;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  const connects: Connect[] = [];

  beforeAll(async () => {
    broker = await startMosquitto({ 'devstreams-hub': 'hub-secret', dev1: 'dev1-secret' });
    dir = mkdtempSync(join(tmpdir(), 'devstreams-fleet-restart-'));
    hub = await startFleetHub(dir, `mqtt://127.0.0.1:${broker.hubPort}`, 'hub-secret');
    client = serviceClientFor(hub.host, dir);
    echo = await startEchoServer();
    writeFileSync(join(dir, 'dev1.password'), 'dev1-secret\n', { mode: 0o600 });
    agent = await startFleetAgent(
      fleetAgentYaml({
        connectionString: fleetDeviceConnectionString(hub, dir, 'dev1'),
        hubCa: join(dir, 'ca.pem'),
        brokerUrl: `mqtts://127.0.0.1:${broker.devicePort}`,
        passwordFile: join(dir, 'dev1.password'),
        brokerCa: broker.caFile,
        services: { echo: echo.port },
      }),
    );
    await until(() => hub.isDeviceOnline('dev1'), 'hub to see dev1 online', 30_000);
  }, 60_000);

  afterAll(async () => {
    for (const c of connects) await c.stop();
    await agent?.stop();
    client?.close();
    await hub?.stop();
    await echo?.close();
    await broker?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const echoOnce = async (): Promise<void> => {
    const c = new Connect({ client, deviceId: 'dev1', service: 'echo', listen: { host: '127.0.0.1', port: 0 }, log: testLogger('connect') });
    await c.start();
    connects.push(c);
    const payload = random(64 * 1024);
    expect(sha256(await roundTrip(c.address.port, payload))).toBe(sha256(payload));
  };

  it('streams before the crash', echoOnce);

  it('while the broker is down the hub says the device is not online, at once', async () => {
    const { proc } = broker;
    proc.kill('SIGKILL');
    await new Promise<void>((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once('exit', () => r())));
    await until(() => !hub.isDeviceOnline('dev1'), 'hub to notice the broker is gone', 30_000);
    const err = await client.requestStream('dev1', 'echo').catch((e: unknown) => e);
    expect(isDevstreamsError(err, 'EDEVICE_OFFLINE')).toBe(true);
  });

  it('after the broker comes back, hub and agent reconnect and streams work again', async () => {
    await broker.restart();
    await until(() => hub.isDeviceOnline('dev1'), 'hub and device to reconnect and dev1 to announce itself', 60_000);
    await echoOnce();
  }, 90_000);
});
