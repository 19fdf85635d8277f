import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as mqttConnect, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceRegistry, HubDataDir } from '../hub/data-dir';
import { issueCertificate } from '../hub/pki';
import { silentLogger } from '../core/log';
import { Connect } from '../service/connect';
import { HubClient } from '../service/hub-client';
import {
  MAX_SAS_LIFETIME_S,
  createSasToken,
  deviceResourceUri,
  formatDeviceConnectionString,
  formatServiceConnectionString,
  isDevstreamsError,
  mqttUsername,
  parseServiceConnectionString,
  streamRequestSubscription,
} from '../wire';
import { runCli, runCliToEnd, startHubProcess, type CliProcess } from './helpers/cli';
import { until } from './helpers/stack';
import { roundTrip, startEchoServer } from './helpers/targets';

/**
 * Credentials end the sessions they opened (issue 11): against a real hub process, a device's MQTT
 * session ends when its SAS token expires, at once when the key it signed with is rotated or the
 * device is removed or disabled, and when its client certificate expires; no stream request (and so
 * no device stream token) reaches a session whose credentials ended. The agent renews before expiry,
 * so the hub never has to cut it. Token bounds: `se` at most a day ahead, `sr` checked on service tokens.
 */

const nowS = (): number => Math.floor(Date.now() / 1000);

interface RawDevice {
  client: MqttClient;
  closedAt: Promise<number>;
}

describe('credentials end sessions (real hub process)', () => {
  let dir: string;
  let hub: CliProcess & { port: number };
  let host: string;
  let registry: DeviceRegistry;
  let client: HubClient;
  let caPem: Buffer;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  const raws: MqttClient[] = [];
  const agents: CliProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'devstreams-sessions-'));
    hub = await startHubProcess(dir);
    host = `127.0.0.1:${hub.port}`;
    registry = new DeviceRegistry(new HubDataDir(dir));
    const secrets = new HubDataDir(dir).secrets();
    caPem = readFileSync(join(dir, 'ca.pem'));
    client = new HubClient({
      service: parseServiceConnectionString(formatServiceConnectionString({ hostName: host, sharedAccessKeyName: secrets.service_policy_name, sharedAccessKey: secrets.service_policy_key })),
      caPem,
      caFile: join(dir, 'ca.pem'),
    });
    echo = await startEchoServer();
  });

  afterAll(async () => {
    for (const r of raws) r.end(true);
    for (const a of agents) await a.stop();
    client?.close();
    await echo?.close();
    await hub?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A device that is nothing but a real MQTT client: connects with the token it is given and never renews. */
  async function rawDevice(id: string, opts: { password?: string; cert?: { certPem: string; keyPem: string } }): Promise<RawDevice> {
    const c = mqttConnect(`wss://${host}/$iothub/websocket`, {
      clientId: id,
      username: mqttUsername(host, id),
      ...(opts.password !== undefined ? { password: opts.password } : {}),
      ...(opts.cert ? { cert: opts.cert.certPem, key: opts.cert.keyPem } : {}),
      ca: caPem,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 20_000,
    });
    raws.push(c);
    const closedAt = new Promise<number>((r) => c.once('close', () => r(Date.now())));
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
      c.once('close', () => reject(new Error(`${id}: closed before CONNACK`)));
    });
    await c.subscribeAsync(streamRequestSubscription('$iothub'));
    return { client: c, closedAt };
  }

  function tokenFor(id: string, key: string, expiresAt: number): string {
    return createSasToken({ resource: deviceResourceUri(host, id), key, expiresAt });
  }

  async function refusedConnack(id: string, password: string): Promise<number | undefined> {
    const c = mqttConnect(`wss://${host}/$iothub/websocket`, { clientId: id, username: mqttUsername(host, id), password, ca: caPem, protocolVersion: 4, reconnectPeriod: 0 });
    raws.push(c);
    return new Promise((resolve) => {
      c.once('connect', () => resolve(undefined));
      c.once('error', (err) => resolve((err as Error & { code?: number }).code));
    });
  }

  async function offlineError(id: string): Promise<unknown> {
    return client.requestStream(id, 'echo').then(
      () => undefined,
      (err: unknown) => err,
    );
  }

  it('a session ends when its SAS token expires, and no stream request reaches it after', async () => {
    const key = registry.add('pi-exp').primary_key;
    const se = nowS() + 4;
    const dev = await rawDevice('pi-exp', { password: tokenFor('pi-exp', key, se) });
    const closedAt = await dev.closedAt;
    expect(closedAt).toBeGreaterThanOrEqual(se * 1000 - 50);
    // Generous: the hub's timer fires at se; a busy machine may take a few seconds to close.
    expect(closedAt).toBeLessThan(se * 1000 + 10_000);
    await hub.waitForLine(/"device":"pi-exp".*"why":"SAS token expired".*device session ended/);
    const err = await offlineError('pi-exp');
    expect(isDevstreamsError(err, 'EDEVICE_OFFLINE')).toBe(true);
  }, 30_000);

  it('rotating the key a session signed with ends it at once; rotating the other key does not', async () => {
    const key = registry.add('pi-rot').primary_key;
    const dev = await rawDevice('pi-rot', { password: tokenFor('pi-rot', key, nowS() + 3600) });
    let closed = false;
    void dev.closedAt.then(() => (closed = true));
    expect((await runCliToEnd(['hub', 'rotate-key', 'pi-rot', '--key', 'secondary', '--data-dir', dir])).code).toBe(0);
    // The hub re-reads devices.json within a second; give it three and check the session is still up.
    const rereadBy = Date.now() + 3000;
    await until(() => Date.now() > rereadBy || closed, 'three seconds', 10_000);
    expect(closed).toBe(false);
    const rotatedAt = Date.now();
    expect((await runCliToEnd(['hub', 'rotate-key', 'pi-rot', '--key', 'primary', '--data-dir', dir])).code).toBe(0);
    const closedAt = await dev.closedAt;
    expect(closedAt - rotatedAt).toBeLessThan(10_000);
    await hub.waitForLine(/"device":"pi-rot".*"why":"the key its token was signed with was rotated"/);
    // The old key is refused from now on.
    expect(await refusedConnack('pi-rot', tokenFor('pi-rot', key, nowS() + 3600))).toBe(5);
  }, 40_000);

  it('removing or disabling a device ends its session at once, and it cannot come back', async () => {
    const gone = registry.add('pi-gone').primary_key;
    const off = registry.add('pi-off').primary_key;
    const devGone = await rawDevice('pi-gone', { password: tokenFor('pi-gone', gone, nowS() + 3600) });
    const devOff = await rawDevice('pi-off', { password: tokenFor('pi-off', off, nowS() + 3600) });
    const changedAt = Date.now();
    expect((await runCliToEnd(['hub', 'remove-device', 'pi-gone', '--data-dir', dir])).code).toBe(0);
    expect((await runCliToEnd(['hub', 'disable-device', 'pi-off', '--data-dir', dir])).code).toBe(0);
    const [goneAt, offAt] = await Promise.all([devGone.closedAt, devOff.closedAt]);
    expect(goneAt - changedAt).toBeLessThan(10_000);
    expect(offAt - changedAt).toBeLessThan(10_000);
    await hub.waitForLine(/"device":"pi-gone".*"why":"device removed from the registry"/);
    await hub.waitForLine(/"device":"pi-off".*"why":"device disabled"/);
    expect(await refusedConnack('pi-off', tokenFor('pi-off', off, nowS() + 3600))).toBe(5);
    expect(await refusedConnack('pi-gone', tokenFor('pi-gone', gone, nowS() + 3600))).toBe(5);
  }, 40_000);

  it('a hand edit of devices.json (a device taken out) ends its session the same way', async () => {
    const key = registry.add('pi-edit').primary_key;
    const dev = await rawDevice('pi-edit', { password: tokenFor('pi-edit', key, nowS() + 3600) });
    const file = join(dir, 'devices.json');
    const { devices } = JSON.parse(readFileSync(file, 'utf8')) as { devices: Record<string, unknown> };
    delete devices['pi-edit'];
    const changedAt = Date.now();
    writeFileSync(file, JSON.stringify({ devices }, null, 2));
    expect((await dev.closedAt) - changedAt).toBeLessThan(10_000);
    await hub.waitForLine(/"device":"pi-edit".*"why":"device removed from the registry"/);
  }, 40_000);

  it('disabling a device also ends its open streams (the service side sees a reset)', async () => {
    const cs = formatDeviceConnectionString({ hostName: host, deviceId: 'pi-live', sharedAccessKey: registry.add('pi-live').primary_key });
    const secret = join(dir, 'pi-live.secret');
    writeFileSync(secret, `${cs}\n`, { mode: 0o600 });
    const config = join(dir, 'pi-live.yaml');
    writeFileSync(config, `hub:\n  connection_string_file: ${secret}\n  ca: ${join(dir, 'ca.pem')}\nstatus_file: ${config}.status.json\ntelemetry:\n  interval: off\nservices:\n  echo:\n    port: ${echo.port}\n`);
    const agent = runCli(['agent', '--config', config]);
    agents.push(agent);
    await agent.waitForLine(/listening for stream requests/);
    const port = new Connect({ client, deviceId: 'pi-live', service: 'echo', listen: { host: '127.0.0.1', port: 0 }, log: silentLogger() });
    await port.start();
    try {
      const socket = netConnect({ host: '127.0.0.1', port: port.address.port });
      const ended = new Promise<string>((resolve) => {
        socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        socket.on('close', () => resolve('closed'));
      });
      const echoed = new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
      socket.write('before');
      expect(await echoed).toBe('before');
      const disabledAt = Date.now();
      expect((await runCliToEnd(['hub', 'disable-device', 'pi-live', '--data-dir', dir])).code).toBe(0);
      expect(await ended).toBe('ECONNRESET');
      expect(Date.now() - disabledAt).toBeLessThan(10_000);
      await hub.waitForLine(/"device":"pi-live".*ending the streams of a device whose credentials were revoked/);
    } finally {
      await port.stop();
    }
  }, 60_000);

  it('an X.509 session ends when its client certificate expires', async () => {
    registry.add('pi-cert', { x509: true });
    const ca = { certPem: readFileSync(join(dir, 'ca.pem'), 'utf8'), keyPem: readFileSync(join(dir, 'ca-key.pem'), 'utf8') };
    const lifetimeS = 6;
    const cert = issueCertificate(ca, { commonName: 'pi-cert', usage: 'client', years: lifetimeS / (365 * 24 * 3600) });
    const notAfter = Date.parse(new X509Certificate(cert.certPem).validTo);
    const dev = await rawDevice('pi-cert', { cert });
    const closedAt = await dev.closedAt;
    expect(closedAt).toBeGreaterThanOrEqual(notAfter - 50);
    expect(closedAt).toBeLessThan(notAfter + 10_000);
    await hub.waitForLine(/"device":"pi-cert".*"why":"client certificate expired"/);
  }, 30_000);

  it(`a device token that expires more than ${MAX_SAS_LIFETIME_S} s ahead is refused`, async () => {
    const key = registry.add('pi-long').primary_key;
    expect(await refusedConnack('pi-long', tokenFor('pi-long', key, 999_999_999_999))).toBe(5);
    expect(await refusedConnack('pi-long', tokenFor('pi-long', key, nowS() + MAX_SAS_LIFETIME_S + 120))).toBe(5);
    await hub.waitForLine(/"device":"pi-long".*the hub accepts at most 86400 s/);
    const ok = await rawDevice('pi-long', { password: tokenFor('pi-long', key, nowS() + MAX_SAS_LIFETIME_S - 60) });
    ok.client.end(true);
  }, 30_000);

  it('an agent that signs 10 s tokens renews before the hub would end its session: no cut, no flap, streams work', async () => {
    const cs = formatDeviceConnectionString({ hostName: host, deviceId: 'pi-renew', sharedAccessKey: registry.add('pi-renew').primary_key });
    const secret = join(dir, 'pi-renew.secret');
    writeFileSync(secret, `${cs}\n`, { mode: 0o600 });
    const config = join(dir, 'pi-renew.yaml');
    writeFileSync(config, `hub:\n  connection_string_file: ${secret}\n  ca: ${join(dir, 'ca.pem')}\n  sas_token_lifetime: 10s\nstatus_file: ${config}.status.json\ntelemetry:\n  interval: off\nservices:\n  echo:\n    port: ${echo.port}\n`);
    const agent = runCli(['agent', '--config', config]);
    agents.push(agent);
    await agent.waitForLine(/listening for stream requests/);
    // Three token lifetimes: the agent renews at 8 s, 16 s, 24 s; the hub would cut at 10 s, 20 s, 30 s.
    const until3 = Date.now() + 31_000;
    await until(() => Date.now() > until3, 'three token lifetimes', 40_000);
    const renewals = agent.stderr.filter((l) => l.includes('renewing SAS token')).length;
    expect(renewals).toBeGreaterThanOrEqual(3);
    expect(hub.stderr.filter((l) => l.includes('"device":"pi-renew"') && l.includes('device session ended'))).toEqual([]);
    // No flap: every reconnect was a renewal, none a lost connection.
    expect(agent.stderr.filter((l) => l.includes('hub connection lost') || l.includes('hub connection failed'))).toEqual([]);
    await until(() => agent.stderr.filter((l) => l.includes('listening for stream requests')).length === renewals + 1, 'the last renewal to resubscribe', 15_000);
    const port = new Connect({ client, deviceId: 'pi-renew', service: 'echo', listen: { host: '127.0.0.1', port: 0 }, log: silentLogger() });
    await port.start();
    try {
      expect((await roundTrip(port.address.port, Buffer.from('still here'))).toString()).toBe('still here');
    } finally {
      await port.stop();
    }
  }, 90_000);
});

describe('service tokens (real hub process)', () => {
  let dir: string;
  let hub: CliProcess & { port: number };
  let host: string;
  let key: string;
  let policy: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'devstreams-service-tokens-'));
    hub = await startHubProcess(dir);
    host = `127.0.0.1:${hub.port}`;
    const secrets = new HubDataDir(dir).secrets();
    key = secrets.service_policy_key;
    policy = secrets.service_policy_name;
  });

  afterAll(async () => {
    await hub?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function get(path: string, authorization: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port: hub.port, path, method: 'GET', headers: { authorization }, ca: readFileSync(join(dir, 'ca.pem')) }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  const token = (resource: string, expiresAt: number): string => createSasToken({ resource, key, keyName: policy, expiresAt });

  it('refuses an expiry further ahead than a day (se=999999999999 was accepted)', async () => {
    expect((await get('/devices', token(host, nowS() + 3600))).status).toBe(200);
    const far = await get('/devices', token(host, 999_999_999_999));
    expect(far.status).toBe(401);
    expect(far.body).toMatch(/at most 86400 s/);
    expect((await get('/devices', token(host, nowS() + MAX_SAS_LIFETIME_S + 120))).status).toBe(401);
  });

  it('checks sr: another hub\'s name is refused, a device-scoped token covers that device only', async () => {
    const other = await get('/devices', token('evil.example.com', nowS() + 3600));
    expect(other.status).toBe(401);
    expect(other.body).toMatch(/not for this hub/);
    // The host name without the port, and in another case, is this hub.
    expect((await get('/devices', token('127.0.0.1', nowS() + 3600))).status).toBe(200);
    const scoped = token(`${host}/devices/pi-1`, nowS() + 3600);
    const list = await get('/devices', scoped);
    expect(list.status).toBe(401);
    expect((JSON.parse(list.body) as { message: string }).message).toBe('token is scoped to "devices/pi-1", not to "devices"');
    const post = (device: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest({ host: '127.0.0.1', port: hub.port, path: `/twins/${device}/streams/echo?api-version=2020-09-30`, method: 'POST', headers: { authorization: scoped }, ca: readFileSync(join(dir, 'ca.pem')) }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    expect(await post('pi-10')).toBe(401);
    // Authorized for pi-1: the hub gets as far as the registry (not registered: 404).
    expect(await post('pi-1')).toBe(404);
  });
});
