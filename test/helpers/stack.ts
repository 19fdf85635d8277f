import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../agent/agent';
import { parseAgentConfig } from '../../agent/config';
import { silentLogger, createLogger, type Logger } from '../../core/log';
import { HubDataDir } from '../../hub/data-dir';
import { DeviceRegistry } from '../../hub/device-registry';
import { Hub, type HubOptions } from '../../hub/hub';
import { Connect } from '../../service/connect';
import { HubClient } from '../../service/hub-client';
import { formatDeviceConnectionString, formatServiceConnectionString, parseServiceConnectionString } from '../../wire';

export function testLogger(name: string): Logger {
  return process.env.TEST_LOG ? createLogger(name, { level: process.env.TEST_LOG, format: 'json' }) : silentLogger();
}

export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface Stack {
  dir: string;
  hub: Hub;
  caPem: Buffer;
  caFile: string;
  deviceConnectionString: (id?: string) => string;
  serviceConnectionString: string;
  client: HubClient;
  startAgent: (servicesYaml: string, opts?: { deviceId?: string; extraHubYaml?: string }) => Promise<Agent>;
  connect: (deviceId: string, service: string) => Promise<Connect>;
  stop: () => Promise<void>;
}

/** A real hub on 127.0.0.1:0 with its own data directory, plus helpers to add agents and `connect` ports. */
export async function startStack(opts: { handshakeTimeoutMs?: number; hub?: Partial<Pick<HubOptions, 'mqttListen' | 'rateLimits' | 'metricsListen'>> } = {}): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-test-'));
  const hub = new Hub({
    dataDir: dir,
    listen: { host: '127.0.0.1', port: 0 },
    log: testLogger('hub'),
    ...(opts.handshakeTimeoutMs ? { handshakeTimeoutMs: opts.handshakeTimeoutMs } : {}),
    ...opts.hub,
  });
  await hub.start();
  const dataDir = new HubDataDir(dir);
  const registry = new DeviceRegistry(dataDir);
  const secrets = dataDir.secrets();
  const caFile = join(dir, 'ca.pem');
  const caPem = readFileSync(caFile);
  const serviceConnectionString = formatServiceConnectionString({
    hostName: hub.host,
    sharedAccessKeyName: secrets.service_policy_name,
    sharedAccessKey: secrets.service_policy_key,
  });
  const deviceConnectionString = (id = 'pi-001'): string =>
    formatDeviceConnectionString({ hostName: hub.host, deviceId: id, sharedAccessKey: registry.add(id).primary_key });
  const client = new HubClient({ service: parseServiceConnectionString(serviceConnectionString), caPem, caFile });
  const agents: Agent[] = [];
  const connects: Connect[] = [];
  return {
    dir,
    hub,
    caPem,
    caFile,
    deviceConnectionString,
    serviceConnectionString,
    client,
    async startAgent(servicesYaml, o = {}) {
      const yaml = `hub:\n  connection_string: "${deviceConnectionString(o.deviceId)}"\n  ca: ${caFile}\n${o.extraHubYaml ?? ''}services:\n${servicesYaml}`;
      const { config, problems } = parseAgentConfig(yaml, 'test.yaml');
      if (!config) throw new Error(problems.map((p) => p.message).join('; '));
      const agent = new Agent(config, testLogger('agent'));
      agents.push(agent);
      agent.start();
      await until(() => agent.connected, 'agent to connect');
      return agent;
    },
    async connect(deviceId, service) {
      const c = new Connect({ client, deviceId, service, listen: { host: '127.0.0.1', port: 0 }, log: testLogger('connect') });
      await c.start();
      connects.push(c);
      return c;
    },
    async stop() {
      for (const c of connects) await c.stop();
      for (const a of agents) await a.stop();
      client.close();
      await hub.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
