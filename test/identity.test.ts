import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as mqttConnect, type IClientOptions } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../agent/agent';
import { parseAgentConfig } from '../agent/config';
import { addX509Device } from '../cli/run/hub-devices';
import { HubDataDir } from '../hub/data-dir';
import { DeviceRegistry } from '../hub/device-registry';
import { createCa, issueCertificate } from '../hub/pki';
import { createSasToken, deviceResourceUri, mqttUsername } from '../wire';
import { lastLine, requireBundle, runCliToEnd } from './helpers/cli';
import { startStack, testLogger, until, type Stack } from './helpers/stack';
import { roundTrip, startEchoServer } from './helpers/targets';

/** Connects a raw MQTT client; resolves 'connected' or the CONNACK refusal / TLS error message. */
function tryConnect(url: string, opts: IClientOptions): Promise<string> {
  const client = mqttConnect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000, ...opts });
  return new Promise((resolve) => {
    client.once('connect', () => {
      client.end(true);
      resolve('connected');
    });
    client.once('error', (err) => {
      client.end(true);
      resolve(err.message);
    });
  });
}

describe('X.509 device identity', () => {
  let stack: Stack;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let out: string;
  let issued: ReturnType<typeof addX509Device>;
  const agents: Agent[] = [];

  const agentYaml = (extra = '', cert = issued.certFile, key = issued.keyFile, cs = issued.connectionString): string =>
    `hub:\n  connection_string: "${cs}"\n  ca: ${stack.caFile}\n  cert: ${cert}\n  key: ${key}\n${extra}services:\n  echo:\n    port: ${echo.port}\n`;

  beforeAll(async () => {
    stack = await startStack({ hub: { mqttListen: { host: '127.0.0.1', port: 0 } } });
    echo = await startEchoServer();
    out = mkdtempSync(join(tmpdir(), 'devstreams-x509-'));
    issued = addX509Device(stack.dir, 'pi-x509', out);
  });
  afterAll(async () => {
    for (const a of agents) await a.stop();
    await stack?.stop();
    await echo?.close();
    rmSync(out, { recursive: true, force: true });
  });

  it('add-device --x509 writes a client certificate for the device, both files 0600', () => {
    expect(issued.connectionString).toBe(`HostName=${stack.hub.host};DeviceId=pi-x509;x509=true`);
    expect(statSync(issued.certFile).mode & 0o777).toBe(0o600);
    expect(statSync(issued.keyFile).mode & 0o777).toBe(0o600);
    expect(new DeviceRegistry(new HubDataDir(stack.dir)).get('pi-x509')?.authentication).toBe('x509_ca');
  });

  it.each([
    ['websocket', ''],
    ['mqtt_tls', 'mqtt_tls'],
  ])('an X.509 agent connects over %s and serves a stream end to end', async (_name, transport) => {
    const extra = transport ? `  transport: mqtt_tls\n  mqtt_tls_port: ${stack.hub.mqttPort}\n` : '';
    const { config, problems } = parseAgentConfig(agentYaml(extra), 'x509.yaml');
    expect(problems).toEqual([]);
    const agent = new Agent(config!, testLogger('agent'));
    agents.push(agent);
    await agent.start();
    await until(() => agent.connected, 'the X.509 agent to connect');
    const c = await stack.connect('pi-x509', 'echo');
    expect((await roundTrip(c.address.port, Buffer.from('cert-auth'))).toString()).toBe('cert-auth');
    await agent.stop();
    agents.splice(agents.indexOf(agent), 1);
  });

  it('refuses to start when the key or the certificate is readable by others, or does not belong', () => {
    chmodSync(issued.keyFile, 0o644);
    try {
      const { config, problems } = parseAgentConfig(agentYaml(), 'x509.yaml');
      expect(config).toBeUndefined();
      expect(problems.map((p) => p.message)).toEqual([
        `hub.key: ${issued.keyFile} is accessible by group or others (mode 0644); the agent refuses to start: run chmod 600 ${issued.keyFile}`,
      ]);
      expect(problems[0]!.line).toBe(5);
    } finally {
      chmodSync(issued.keyFile, 0o600);
    }
    const other = addX509Device(stack.dir, 'pi-other', out);
    const wrongCn = parseAgentConfig(agentYaml('', other.certFile, other.keyFile), 'x509.yaml');
    expect(wrongCn.problems.map((p) => p.message)).toEqual([`hub.cert: ${other.certFile} is for "pi-other", not for device "pi-x509"`]);
    const mismatched = parseAgentConfig(agentYaml('', issued.certFile, other.keyFile), 'x509.yaml');
    expect(mismatched.problems.map((p) => p.message)).toEqual([`hub.key: ${other.keyFile} is not the key of the certificate in ${issued.certFile}`]);
    const noCert = parseAgentConfig(
      `hub:\n  connection_string: "${issued.connectionString}"\nservices: {}\n`,
      'x509.yaml',
    );
    expect(noCert.problems.map((p) => p.message)).toEqual(['hub.connection_string says x509=true: set hub.cert and hub.key to the device certificate and key files']);
  });

  it('the hub refuses a certificate for another device, from another CA, none, or a key instead', async () => {
    const hubUrl = `wss://${stack.hub.host}/$iothub/websocket`;
    const tlsUrl = `mqtts://127.0.0.1:${stack.hub.mqttPort}`;
    const base = { clientId: 'pi-x509', username: mqttUsername(stack.hub.host, 'pi-x509'), ca: stack.caPem };
    const mine = { cert: readFileSync(issued.certFile), key: readFileSync(issued.keyFile) };
    const other = addX509Device(stack.dir, 'pi-other2', out);
    const foreignCa = createCa('not the hub CA');
    const foreign = issueCertificate(foreignCa, { commonName: 'pi-x509', usage: 'client' });

    expect(await tryConnect(tlsUrl, { ...base, ...mine })).toBe('connected');
    expect(await tryConnect(hubUrl, { ...base, ...mine })).toBe('connected');
    for (const url of [hubUrl, tlsUrl]) {
      expect(await tryConnect(url, { ...base, cert: readFileSync(other.certFile), key: readFileSync(other.keyFile) })).toMatch(/Not authorized/);
      expect(await tryConnect(url, { ...base, cert: foreign.certPem, key: foreign.keyPem })).toMatch(/Not authorized/);
      expect(await tryConnect(url, base)).toMatch(/Not authorized|Bad username or password/);
      const sas = createSasToken({
        resource: deviceResourceUri(stack.hub.host, 'pi-x509'),
        key: new DeviceRegistry(new HubDataDir(stack.dir)).get('pi-x509')!.primary_key,
        expiresAt: Math.floor(Date.now() / 1000) + 600,
      });
      expect(await tryConnect(url, { ...base, password: sas })).toMatch(/Not authorized/);
    }
  });
});

describe('key rotation', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  const connectWith = (key: string): Promise<string> =>
    tryConnect(`wss://${stack.hub.host}/$iothub/websocket`, {
      clientId: 'pi-rot',
      username: mqttUsername(stack.hub.host, 'pi-rot'),
      password: createSasToken({ resource: deviceResourceUri(stack.hub.host, 'pi-rot'), key, expiresAt: Math.floor(Date.now() / 1000) + 600 }),
      ca: stack.caPem,
    });

  it('either key works until it is replaced; the replacement works at once', async () => {
    const registry = new DeviceRegistry(new HubDataDir(stack.dir));
    const first = registry.add('pi-rot');
    expect(await connectWith(first.primary_key)).toBe('connected');
    expect(await connectWith(first.secondary_key)).toBe('connected');

    const second = registry.rotateKey('pi-rot', 'secondary');
    expect(second.primary_key).toBe(first.primary_key);
    expect(await connectWith(first.primary_key)).toBe('connected');
    expect(await connectWith(second.secondary_key)).toBe('connected');
    expect(await connectWith(first.secondary_key)).toMatch(/Not authorized/);

    const third = registry.rotateKey('pi-rot', 'primary');
    expect(await connectWith(first.primary_key)).toMatch(/Not authorized/);
    expect(await connectWith(third.primary_key)).toBe('connected');
    expect(await connectWith(second.secondary_key)).toBe('connected');
  });

  it('`devstreams hub rotate-key` prints the new connection string, and only that key changes', async () => {
    requireBundle();
    const registry = new DeviceRegistry(new HubDataDir(stack.dir));
    const before = registry.add('pi-cli');
    const r = await runCliToEnd(['hub', 'rotate-key', 'pi-cli', '--key', 'primary', '--data-dir', stack.dir]);
    expect(r.code).toBe(0);
    const after = JSON.parse(readFileSync(join(stack.dir, 'devices.json'), 'utf8')).devices['pi-cli'];
    expect(after.primary_key).not.toBe(before.primary_key);
    expect(after.secondary_key).toBe(before.secondary_key);
    expect(lastLine(r.stdout)).toBe(`HostName=${stack.hub.host};DeviceId=pi-cli;SharedAccessKey=${after.primary_key}`);
    expect(r.stderr).toMatch(/the secondary key still works/);
    const bad = await runCliToEnd(['hub', 'rotate-key', 'pi-cli', '--key', 'tertiary', '--data-dir', stack.dir]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--key must be primary or secondary/);
  });
});
