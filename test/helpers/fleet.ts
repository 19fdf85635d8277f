import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../../agent/agent';
import { parseAgentConfig } from '../../agent/config';
import { HubDataDir } from '../../hub/data-dir';
import { DeviceRegistry } from '../../hub/device-registry';
import { Hub, type HubOptions } from '../../hub/hub';
import { HubClient } from '../../service/hub-client';
import { formatDeviceConnectionString, formatServiceConnectionString, parseServiceConnectionString } from '../../wire';
import { testLogger } from './stack';

/** An agent config in fleet mode: the hub named by the connection string, the device on a broker. */
export function fleetAgentYaml(o: { connectionString: string; hubCa: string; brokerUrl: string; passwordFile?: string; brokerCa?: string; cert?: { cert: string; key: string }; streamHosts?: string[]; services: Record<string, number> }): string {
  return [
    'hub:',
    `  connection_string: "${o.connectionString}"`,
    `  ca: ${o.hubCa}`,
    ...(o.streamHosts ? [`  stream_hosts: [${o.streamHosts.map((h) => JSON.stringify(h)).join(', ')}]`] : []),
    'broker:',
    `  url: ${o.brokerUrl}`,
    ...(o.passwordFile ? [`  password_file: ${o.passwordFile}`] : []),
    ...(o.brokerCa ? [`  ca: ${o.brokerCa}`] : []),
    ...(o.cert ? [`  cert: ${o.cert.cert}`, `  key: ${o.cert.key}`] : []),
    'services:',
    ...Object.entries(o.services).flatMap(([name, port]) => [`  ${name}:`, `    port: ${port}`]),
    '',
  ].join('\n');
}

/** Starts an in-process agent from fleet YAML. */
export async function startFleetAgent(yaml: string): Promise<Agent> {
  const { config, problems } = parseAgentConfig(yaml, 'fleet.yaml');
  if (!config) throw new Error(problems.map((p) => p.message).join('; '));
  const agent = new Agent(config, testLogger('agent'));
  await agent.start();
  return agent;
}

/** A service client for one hub instance, with the credentials and CA of a (shared) data dir. */
export function serviceClientFor(hostName: string, dataDir: string): HubClient {
  const secrets = new HubDataDir(dataDir).secrets();
  return new HubClient({
    service: parseServiceConnectionString(formatServiceConnectionString({ hostName, sharedAccessKeyName: secrets.service_policy_name, sharedAccessKey: secrets.service_policy_key })),
    caPem: readFileSync(join(dataDir, 'ca.pem')),
  });
}

/** A hub in fleet mode on 127.0.0.1:0 (or `port`), logged in to the broker as devstreams-hub. */
export async function startFleetHub(dataDir: string, brokerUrl: string, hubPassword: string, more: Partial<HubOptions> = {}): Promise<Hub> {
  const hub = new Hub({
    dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    externalBroker: { url: brokerUrl, username: 'devstreams-hub', password: hubPassword },
    log: testLogger(`hub${more.instanceId ? `-${more.instanceId}` : ''}`),
    ...more,
  });
  await hub.start();
  return hub;
}

/** Registers a device with the hub's data dir and returns its connection string. */
export function fleetDeviceConnectionString(hub: Hub, dataDir: string, deviceId: string): string {
  const key = new DeviceRegistry(new HubDataDir(dataDir)).add(deviceId).primary_key;
  return formatDeviceConnectionString({ hostName: hub.host, deviceId, sharedAccessKey: key });
}
