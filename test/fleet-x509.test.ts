import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent';
import { createCa, issueCertificate } from '../hub/pki';
import { Hub } from '../hub/hub';
import type { HubClient } from '../service/hub-client';
import { freePort } from './helpers/free-port';
import { fleetAgentYaml, fleetDeviceConnectionString, serviceClientFor, startFleetAgent, startFleetHub } from './helpers/fleet';
import { startMosquitto, type Mosquitto } from './helpers/mosquitto';
import { testLogger, until } from './helpers/stack';
import { random, roundTrip, sha256, startEchoServer } from './helpers/targets';
import { Connect } from '../service/connect';

/**
 * Devices that log in to mosquitto with a TLS client certificate instead of a password: the listener
 * the shipped mosquitto.conf describes in comments (require_certificate, use_identity_as_username),
 * so the certificate's CN is the user name the ACL's %u patterns see.
 */
describe('fleet mode: devices authenticated by client certificate', () => {
  let broker: Mosquitto;
  let certs: string;
  let certPort: number;
  let dir: string;
  let hub: Hub;
  let client: HubClient;
  let agent: Agent;
  let connect: Connect | undefined;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;

  beforeAll(async () => {
    certs = mkdtempSync(join(tmpdir(), 'devstreams-device-certs-'));
    const deviceCa = createCa('devstreams test device CA');
    writeFileSync(join(certs, 'device-ca.pem'), deviceCa.certPem);
    const dev3 = issueCertificate(deviceCa, { commonName: 'dev3', usage: 'client' });
    writeFileSync(join(certs, 'dev3.pem'), dev3.certPem);
    writeFileSync(join(certs, 'dev3-key.pem'), dev3.keyPem, { mode: 0o600 });
    certPort = await freePort();
    broker = await startMosquitto(
      { 'devstreams-hub': 'hub-secret' },
      {
        extraConf: (brokerDir) =>
          [
            `listener ${certPort} 127.0.0.1`,
            'protocol mqtt',
            `certfile ${brokerDir}/server.pem`,
            `keyfile ${brokerDir}/server-key.pem`,
            `cafile ${join(certs, 'device-ca.pem')}`,
            'require_certificate true',
            'use_identity_as_username true',
            'use_username_as_clientid true',
          ].join('\n'),
      },
    );
    dir = mkdtempSync(join(tmpdir(), 'devstreams-fleet-x509-'));
    hub = await startFleetHub(dir, `mqtt://127.0.0.1:${broker.hubPort}`, 'hub-secret');
    client = serviceClientFor(hub.host, dir);
    echo = await startEchoServer();
    agent = await startFleetAgent(
      fleetAgentYaml({
        connectionString: fleetDeviceConnectionString(hub, dir, 'dev3'),
        hubCa: join(dir, 'ca.pem'),
        brokerUrl: `mqtts://127.0.0.1:${certPort}`,
        brokerCa: broker.caFile,
        cert: { cert: join(certs, 'dev3.pem'), key: join(certs, 'dev3-key.pem') },
        services: { echo: echo.port },
      }),
    );
    await until(() => hub.isDeviceOnline('dev3'), 'hub to see dev3 online', 30_000);
  }, 60_000);

  afterAll(async () => {
    await connect?.stop();
    await agent?.stop();
    client?.close();
    await hub?.stop();
    await echo?.close();
    await broker?.stop();
    for (const d of [dir, certs]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it('streams end to end with the certificate as the identity', async () => {
    connect = new Connect({ client, deviceId: 'dev3', service: 'echo', listen: { host: '127.0.0.1', port: 0 }, log: testLogger('connect') });
    await connect.start();
    const payload = random(256 * 1024);
    expect(sha256(await roundTrip(connect.address.port, payload))).toBe(sha256(payload));
  });

  it('the listener refuses a device without a certificate', async () => {
    const err = await connectAsync(`mqtts://127.0.0.1:${certPort}`, { clientId: 'dev3', username: 'dev3', ca: broker.caPem, reconnectPeriod: 0, connectTimeout: 10_000 }).catch((e: unknown) => e);
    // A TLS failure (no certificate), not an MQTT refusal (CONNACK codes are numbers).
    expect(err).toBeInstanceOf(Error);
    expect(typeof (err as { code?: unknown }).code).not.toBe('number');
    expect(String((err as Error).message)).toMatch(/certificate|alert|socket|ECONNRESET|closed/i);
  });
});
