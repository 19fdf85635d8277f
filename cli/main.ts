import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { Agent } from '../agent/agent';
import { ConfigError, formatProblem, loadAgentConfig } from '../agent/config';
import { parseHostPort, formatHostPort } from '../core/address';
import { createLogger, type Logger } from '../core/log';
import { DeviceRegistry, HubDataDir } from '../hub/data-dir';
import { Hub } from '../hub/hub';
import { Connect } from '../service/connect';
import { runShell } from '../service/shell';
import { HubClient } from '../service/hub-client';
import { DevstreamsError, formatDeviceConnectionString, formatServiceConnectionString, isDevstreamsError, parseServiceConnectionString } from '../wire';
import { EXIT } from './exit-codes';
import { addX509Device, registerSecurityCommands } from './security-commands';
import { DEFAULT_DEVICE_STREAM_LIMIT, DEFAULT_SERVICE_STREAM_LIMIT } from '../hub/rate-limit';
import { registerOpsCommands, reloadOnHangup } from './ops-commands';
import { provisionCommand } from './provision';
import { versionText } from './version';
import { addFleetOptions, fleetHubOptions, type FleetCliOptions } from './fleet-options';

interface Stoppable {
  stop(): Promise<void>;
}

/**
 * SIGTERM/SIGINT stop the part gracefully and exit 0; a second signal exits at once. Call it before
 * `start()`: a supervisor may signal as soon as it sees the first line of output.
 */
function runUntilSignalled(part: Stoppable, log: Logger): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(EXIT.FAILURE);
    }
    stopping = true;
    log.info({ signal }, 'stopping');
    part
      .stop()
      .catch((err: unknown) => log.error({ err }, 'error while stopping'))
      .finally(() => process.exit(EXIT.OK));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

function readCa(file: string | undefined): Buffer | undefined {
  if (!file) return undefined;
  try {
    return readFileSync(file);
  } catch (err) {
    throw new DevstreamsError('ECONFIG', `cannot read CA file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function serviceConnectionString(): string {
  const cs = process.env.DEVSTREAMS_CONNECTION_STRING;
  if (!cs) {
    throw new DevstreamsError('EUSAGE', 'set DEVSTREAMS_CONNECTION_STRING to the service connection string (devstreams hub service-string --data-dir DIR prints it)');
  }
  return cs;
}

/** `RATE/BURST` (`200/1000`): a steady rate per second and a burst, for the hub's stream request limits. */
function parseRate(text: string, flag: string): { perSecond: number; burst: number } {
  const m = /^(\d+(?:\.\d+)?)\/(\d+)$/.exec(text.trim());
  const perSecond = Number(m?.[1]);
  const burst = Number(m?.[2]);
  if (!m || !(perSecond > 0) || burst < 1) throw new DevstreamsError('EUSAGE', `${flag} wants RATE/BURST such as 200/1000 (requests per second / at once), not "${text}"`);
  return { perSecond, burst };
}

export function buildProgram(): Command {
  const program = new Command('devstreams')
    .description('Reach devices behind NAT: IoT Hub compatible device streams')
    .version(versionText(), '-V, --version', 'print version, build commit, Node version and architecture')
    .enablePositionalOptions()
    .showHelpAfterError();

  const hub = program
    .command('hub')
    .description('run a hub: service API, streaming endpoint and MQTT broker on one TLS port')
    .enablePositionalOptions()
    // Not requiredOption: commander would demand it of `hub add-device` too.
    .option('--data-dir <dir>', 'where the hub keeps its CA, keys and device registry (required)')
    .option('--listen <host:port>', 'address to listen on', '0.0.0.0:8443')
    .option('--public-host <name[:port]>', 'HostName devices and services use, when it differs from the listen address')
    .option('--san <name...>', 'extra DNS names or IPs for the server certificate')
    .option('--mqtt-listen <host:port>', "also accept MQTT over TLS here (IoT Hub's 8883), same certificate and broker")
    .option('--device-stream-rate <per_s/burst>', `stream requests one device may receive: steady rate per second / burst (default ${DEFAULT_DEVICE_STREAM_LIMIT.perSecond}/${DEFAULT_DEVICE_STREAM_LIMIT.burst})`)
    .option('--service-stream-rate <per_s/burst>', `stream requests one service credential may make: per second / burst (default ${DEFAULT_SERVICE_STREAM_LIMIT.perSecond}/${DEFAULT_SERVICE_STREAM_LIMIT.burst})`);
  // Fleet options after the essential ones, so --help reads in the order a newcomer needs.
  addFleetOptions(hub)
    .action(async (opts: FleetCliOptions & { dataDir?: string; listen: string; publicHost?: string; san?: string[]; mqttListen?: string; deviceStreamRate?: string; serviceStreamRate?: string }) => {
      if (!opts.dataDir) throw new DevstreamsError('EUSAGE', 'hub needs --data-dir DIR (where it keeps its CA, keys and device registry)');
      const log = createLogger('hub');
      const part = new Hub({
        dataDir: opts.dataDir,
        listen: parseHostPort(opts.listen, '0.0.0.0'),
        ...(opts.publicHost ? { publicHost: opts.publicHost } : {}),
        ...(opts.san ? { altNames: opts.san } : {}),
        ...(opts.mqttListen ? { mqttListen: parseHostPort(opts.mqttListen, '0.0.0.0') } : {}),
        ...(opts.deviceStreamRate || opts.serviceStreamRate
          ? {
              rateLimits: {
                ...(opts.deviceStreamRate ? { device: parseRate(opts.deviceStreamRate, '--device-stream-rate') } : {}),
                ...(opts.serviceStreamRate ? { service: parseRate(opts.serviceStreamRate, '--service-stream-rate') } : {}),
              },
            }
          : {}),
        ...fleetHubOptions(opts),
        log,
      });
      runUntilSignalled(part, log);
      await part.start();
      process.stdout.write(`hub listening on ${part.host} (CA: ${opts.dataDir}/ca.pem)\n`);
    });

  hub
    .command('add-device <id>')
    .description('register a device and print its connection string (last line)')
    .requiredOption('--data-dir <dir>', 'the hub data directory')
    .option('--x509', 'authenticate with a client certificate from the hub CA instead of keys')
    .option('--out <dir>', 'with --x509: where to write ID.pem and ID-key.pem (0600)', '.')
    .action((id: string, opts: { dataDir: string; x509?: boolean; out: string }) => {
      if (opts.x509) {
        const issued = addX509Device(opts.dataDir, id, opts.out);
        process.stderr.write(`certificate ${issued.certFile}
key ${issued.keyFile}
(set hub.cert and hub.key in the agent config; keep both 0600)
`);
        process.stdout.write(`${issued.connectionString}
`);
        return;
      }
      const dir = new HubDataDir(opts.dataDir);
      const settings = dir.settings();
      const record = new DeviceRegistry(dir).add(id);
      process.stdout.write(`${formatDeviceConnectionString({ hostName: settings.host_name, deviceId: id, sharedAccessKey: record.primary_key })}\n`);
    });

  hub
    .command('service-string')
    .description('print the service connection string (last line)')
    .requiredOption('--data-dir <dir>', 'the hub data directory')
    .action((opts: { dataDir: string }) => {
      const dir = new HubDataDir(opts.dataDir);
      const settings = dir.settings();
      const secrets = dir.secrets();
      process.stdout.write(
        `${formatServiceConnectionString({ hostName: settings.host_name, sharedAccessKeyName: secrets.service_policy_name, sharedAccessKey: secrets.service_policy_key })}\n`,
      );
    });

  program
    .command('agent')
    .description('run the device agent')
    .requiredOption('-c, --config <file>', 'agent config (YAML)')
    .action(async (opts: { config: string }) => {
      const config = loadAgentConfig(opts.config);
      const log = createLogger('agent', { level: process.env.DEVSTREAMS_LOG_LEVEL ?? config.log.level });
      const agent = new Agent(config, log);
      runUntilSignalled(agent, log);
      reloadOnHangup(opts.config, agent, log);
      await agent.start();
    });

  registerOpsCommands(program);
  registerSecurityCommands(hub);

  program
    .command('connect <device> <service>')
    .description('listen on a local port; every TCP connection to it becomes a stream to DEVICE SERVICE (like ssh -L)')
    .requiredOption('-l, --listen <[host:]port>', 'local address to listen on (host defaults to 127.0.0.1)')
    .option('--ca <file>', "CA that signs the hub's certificate (the hub's DIR/ca.pem); system CAs otherwise")
    .option('--proxy <url>', 'HTTP CONNECT proxy http://[user:password@]host:port, or none; HTTPS_PROXY/NO_PROXY otherwise')
    .action(async (device: string, service: string, opts: { listen: string; ca?: string; proxy?: string }) => {
      const log = createLogger('connect');
      const client = new HubClient({
        service: parseServiceConnectionString(serviceConnectionString()),
        ...(opts.ca ? { caPem: readCa(opts.ca), caFile: opts.ca } : {}),
        ...(opts.proxy ? { proxy: opts.proxy } : {}),
      });
      const part = new Connect({ client, deviceId: device, service, listen: parseHostPort(opts.listen, '127.0.0.1'), log });
      runUntilSignalled(part, log);
      await part.start();
      const { host, port } = part.address;
      process.stdout.write(`listening on ${formatHostPort(host, port)}, forwarding to ${device}/${service}\n`);
    });

  program
    .command('shell <device> [service]')
    .description("a terminal on DEVICE through its pty SERVICE (default \"shell\"); exits with the remote shell's status")
    .option('--ca <file>', "CA that signs the hub's certificate (the hub's DIR/ca.pem); system CAs otherwise")
    .option('--proxy <url>', 'HTTP CONNECT proxy http://[user:password@]host:port, or none; HTTPS_PROXY/NO_PROXY otherwise')
    .action(async (device: string, service: string | undefined, opts: { ca?: string; proxy?: string }) => {
      // Logs would garble a raw terminal: only warnings, and only when asked for more.
      const log = createLogger('shell', { level: process.env.DEVSTREAMS_LOG_LEVEL ?? 'warn' });
      const client = new HubClient({
        service: parseServiceConnectionString(serviceConnectionString()),
        ...(opts.ca ? { caPem: readCa(opts.ca), caFile: opts.ca } : {}),
        ...(opts.proxy ? { proxy: opts.proxy } : {}),
      });
      try {
        process.exitCode = await runShell({
          client,
          deviceId: device,
          service: service ?? 'shell',
          stdin: process.stdin,
          stdout: process.stdout,
          stderr: process.stderr,
          sizeFrom: [process.stdout, process.stderr],
          log,
        });
      } finally {
        client.close();
        process.stdin.destroy();
      }
    });

  program
    .command('check-config <file>')
    .description('validate an agent config: exit 0, or 78 with every problem as file:line:col: message')
    .action((file: string) => {
      const config = loadAgentConfig(file);
      process.stdout.write(`${file}: ok (${Object.keys(config.services).length} services)\n`);
    });

  program.addCommand(provisionCommand());

  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
      return;
    }
    if (err instanceof ConfigError) {
      for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`);
      process.exitCode = EXIT.CONFIG;
      return;
    }
    if (isDevstreamsError(err)) {
      process.stderr.write(`devstreams: ${err.message}\n`);
      process.exitCode = err.code === 'EUSAGE' ? EXIT.USAGE : err.code === 'ECONFIG' || err.code === 'EMALFORMED_CONNECTION_STRING' ? EXIT.CONFIG : EXIT.FAILURE;
      return;
    }
    const e = err as NodeJS.ErrnoException;
    if (e?.code === 'EADDRINUSE' || e?.code === 'EACCES') {
      process.stderr.write(`devstreams: cannot listen: ${e.message}\n`);
      process.exitCode = EXIT.UNAVAILABLE;
      return;
    }
    process.stderr.write(`devstreams: ${e?.stack ?? String(err)}\n`);
    process.exitCode = EXIT.FAILURE;
  }
}

