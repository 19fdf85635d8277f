import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../../agent/agent';
import { parseAgentConfig } from '../../agent/config';
import { HubDataDir } from '../../hub/data-dir';
import { HubClient } from '../../service/hub-client';
import { formatServiceConnectionString, parseServiceConnectionString } from '../../wire';
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
