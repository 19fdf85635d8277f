import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { readSecretFile } from '../core/secret-file';
import type { HubOptions } from '../hub/hub';
import { DevstreamsError } from '../wire';

/** The broker password comes from a file or the environment, never from the command line (ps shows it). */
export const BROKER_PASSWORD_ENV = 'DEVSTREAMS_BROKER_PASSWORD';

export interface FleetCliOptions {
  broker?: string;
  brokerUsername?: string;
  brokerPasswordFile?: string;
  brokerCa?: string;
  brokerCert?: string;
  brokerKey?: string;
  deviceTopicRoot?: string;
  streamingHost?: string;
  instanceId?: string;
  /** Not a fleet option: checked here because it means nothing with --broker. */
  mqttListen?: string;
}

/** `devstreams hub` options for fleet mode (docs/scaling.md). */
export function addFleetOptions(cmd: Command): Command {
  return cmd
    .option('--broker <url>', 'fleet mode: use this external MQTT broker (mqtts://host:port or mqtt://host:port) instead of the embedded one; devices connect there')
    .option('--broker-username <name>', 'user name on the broker (the ACL gives it the hub topics)')
    .option('--broker-password-file <file>', `file holding the broker password (or set ${BROKER_PASSWORD_ENV})`)
    .option('--broker-ca <file>', "CA that signs the broker's certificate (mqtts); system CAs otherwise")
    .option('--broker-cert <file>', 'TLS client certificate for the broker')
    .option('--broker-key <file>', 'key of --broker-cert')
    .option('--device-topic-root <template>', 'per-device topic root on the broker', 'devstreams/{device_id}')
    .option('--streaming-host <host[:port]>', "host streaming URLs name (default: this hub's HostName); another instance, or a balancer that routes /bridges/{id} to one instance")
    .option('--instance-id <id>', 'unique name of this hub instance on the broker (default: random)');
}

function readOption(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new DevstreamsError('ECONFIG', `${flag}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The broker password and client key: refused when group or others may read them, as the agent refuses its own. */
function readSecretOption(file: string, flag: string): Buffer {
  const read = readSecretFile(file, flag, 'the hub');
  if ('problem' in read) throw new DevstreamsError('ECONFIG', read.problem);
  return read.data;
}

export function fleetHubOptions(opts: FleetCliOptions, env: NodeJS.ProcessEnv = process.env): Partial<HubOptions> {
  const out: Partial<HubOptions> = {};
  if (opts.streamingHost) out.streamingHost = opts.streamingHost;
  if (opts.instanceId !== undefined) {
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(opts.instanceId)) throw new DevstreamsError('EUSAGE', '--instance-id must be 1-32 of letters, digits, "_" and "-"');
    out.instanceId = opts.instanceId;
  }
  const brokerOnly = ['brokerUsername', 'brokerPasswordFile', 'brokerCa', 'brokerCert', 'brokerKey'] as const;
  if (!opts.broker) {
    const stray = brokerOnly.find((k) => opts[k] !== undefined);
    if (stray) throw new DevstreamsError('EUSAGE', `--${stray.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --broker`);
    return out;
  }
  if (opts.mqttListen) throw new DevstreamsError('EUSAGE', '--mqtt-listen and --broker do not go together: with --broker, devices connect to the broker');
  if ((opts.brokerCert === undefined) !== (opts.brokerKey === undefined)) throw new DevstreamsError('EUSAGE', '--broker-cert and --broker-key go together');
  const password = opts.brokerPasswordFile ? readSecretOption(opts.brokerPasswordFile, '--broker-password-file').toString('utf8').trim() : env[BROKER_PASSWORD_ENV];
  out.externalBroker = {
    url: opts.broker,
    ...(opts.deviceTopicRoot ? { topicRoot: opts.deviceTopicRoot } : {}),
    ...(opts.brokerUsername ? { username: opts.brokerUsername } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(opts.brokerCa ? { caPem: readOption(opts.brokerCa, '--broker-ca') } : {}),
    ...(opts.brokerCert ? { certPem: readOption(opts.brokerCert, '--broker-cert') } : {}),
    ...(opts.brokerKey ? { keyPem: readSecretOption(opts.brokerKey, '--broker-key') } : {}),
  };
  return out;
}
