// Subcommands load lazily: this file and the register*() files declare commands with commander only;
// each .action() does `await import('./run/...')` of the module that does the work, so `agent` never
// runs the hub's modules (aedes, node-forge) and `hub` never the agent's. Keep static imports here
// light (commander, constants, types). Pattern: /work/notes/cli-pattern.md, test/cli-lazy-load.test.ts.
import { Command, CommanderError } from 'commander';
import { isDevstreamsError } from '../wire';
import { EXIT, exitCodeFor } from './exit-codes';
import { describeFdExhaustion, isFdExhaustion } from '../core/fd-limit';
import { finishProgram } from './help';
import { addServiceOptions } from './service-options';
import { registerSshCommands } from './ssh-commands';
import { registerSecurityCommands } from './security-commands';
import { DEFAULT_DEVICE_STREAM_LIMIT, DEFAULT_SERVICE_STREAM_LIMIT } from '../hub/rate-limit';
import { UNAUTHENTICATED_CONNECTIONS_MAX, UNAUTHENTICATED_PER_ADDRESS_MAX } from '../hub/admission';
import { registerOpsCommands } from './ops-commands';
import { provisionCommand } from './provision';
import { versionText } from './version';
import { addFleetOptions } from './fleet-options';
import type { HubCliOptions } from './run/hub';
import type { ServiceCliOptions } from './run/service-client';
import type { ShellCliOptions } from './run/shell';
import type { HubInitOptions } from './run/hub-init';

export function buildProgram(): Command {
  const program = new Command('devstreams')
    .description('Reach devices behind NAT: IoT Hub compatible device streams')
    // Not .version(text): the text looks up the runtime's package (dpkg's files), so only --version pays for it.
    .option('-V, --version', 'print version, build commit, Node version and architecture, and where that Node comes from')
    .on('option:version', () => {
      process.stdout.write(`${versionText()}\n`);
      process.exit(EXIT.OK);
    })
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
    .option('--device-pages-listen <host:port>', "serve devices' own web pages (the console's Web links) on this second port, apart from the console's origin")
    .option('--device-stream-rate <per_s/burst>', `stream requests one device may receive: steady rate per second / burst (default ${DEFAULT_DEVICE_STREAM_LIMIT.perSecond}/${DEFAULT_DEVICE_STREAM_LIMIT.burst})`)
    .option('--service-stream-rate <per_s/burst>', `stream requests one service credential may make: per second / burst (default ${DEFAULT_SERVICE_STREAM_LIMIT.perSecond}/${DEFAULT_SERVICE_STREAM_LIMIT.burst})`)
    .option('--unauthenticated-max <total/per_address>', `connections that have not authenticated yet, in all and from one address; more are closed at once (default ${UNAUTHENTICATED_CONNECTIONS_MAX}/${UNAUTHENTICATED_PER_ADDRESS_MAX})`)
    .option('--drain <duration>', 'on SIGTERM: how long open streams may run to their end before the rest are reset', '30s')
    .option('--ping-interval <duration>', 'ping streaming WebSockets this often; a side silent for two intervals is cut', '30s')
    .option('--metrics-listen <host:port>', 'Prometheus text metrics (GET /metrics) here, such as 127.0.0.1:9465; off unless set');
  // Fleet options after the essential ones, so --help reads in the order a newcomer needs.
  addFleetOptions(hub).action(async (opts: HubCliOptions) => (await import('./run/hub')).runHub(opts));

  hub
    .command('init')
    .description('make the data directory (CA, certificate, service key, empty registry) without starting; prints the service connection string (last line)')
    .requiredOption('--data-dir <dir>', 'the hub data directory')
    .option('--listen <host:port>', 'address the hub will listen on (the port goes into connection strings)', '0.0.0.0:8443')
    .option('--public-host <name[:port]>', 'HostName devices and services will use, when it differs from the listen address')
    .option('--san <name...>', 'extra DNS names or IPs for the server certificate')
    .action(async (opts: HubInitOptions) => (await import('./run/hub-init')).initHub(opts));

  hub
    .command('add-device <id>')
    .description('register a device and print its connection string (last line)')
    .requiredOption('--data-dir <dir>', 'the hub data directory')
    .option('--x509', 'authenticate with a client certificate from the hub CA instead of keys')
    .option('--out <dir>', 'with --x509: where to write ID.pem and ID-key.pem (0600)', '.')
    .option('--force', 'write even over a devices.json that does not parse (set aside as devices.json.broken-TIME first; its entries are lost)')
    .action(async (id: string, opts: { dataDir: string; x509?: boolean; out: string; force?: boolean }) => (await import('./run/hub-devices')).addDevice(id, opts));

  hub
    .command('service-string')
    .description('print the connection string of the operator "service" (last line); add-operator gives others their own')
    .requiredOption('--data-dir <dir>', 'the hub data directory')
    .action(async (opts: { dataDir: string }) => (await import('./run/hub-devices')).printServiceString(opts));

  program
    .command('agent')
    .description('run the device agent')
    .requiredOption('-c, --config <file>', 'agent config (YAML)')
    .action(async (opts: { config: string }) => (await import('./run/agent')).runAgent(opts));

  registerOpsCommands(program);
  registerSecurityCommands(hub);

  addServiceOptions(
    program
      .command('connect <device> <service>')
      .description('listen on a local port; every TCP connection to it becomes a stream to DEVICE SERVICE (like ssh -L)')
      .requiredOption('-l, --listen <[host:]port>', 'local address to listen on (host defaults to 127.0.0.1)')
      .option('--ping-interval <duration>', 'ping each stream this often; a hub silent for two intervals is taken for gone', '30s')
      .option('--setup-timeout <duration>', 'a stream not open within this is reset, naming the step that timed out', '70s'),
  ).action(async (device: string, service: string, opts: ServiceCliOptions & { listen: string; pingInterval: string; setupTimeout: string }) => (await import('./run/connect')).runConnect(device, service, opts));

  addServiceOptions(
    program
      .command('shell <device> [service] [command...]')
      .usage('[options] DEVICE [SERVICE] [-- CMD [ARGS...]]')
      .description("a terminal on DEVICE through its pty SERVICE (default \"shell\"), or one command after --, like ssh host cmd; exits with the remote status")
      .option('-t, --tty', 'a terminal for the command too (as ssh -t)')
      .option('-T, --no-tty', 'no terminal, even for a shell on a terminal (as ssh -T)')
      .option('--timeout <duration>', 'give up after this long (30, 30s, 2m: connecting and running), exit 124'),
  ).action(async (device: string, service: string | undefined, words: string[], opts: ShellCliOptions) => (await import('./run/shell')).runShellCommand(device, [...(service === undefined ? [] : [service]), ...words], opts));

  program
    .command('check-config <file>')
    .description('validate an agent config: exit 0, or 78 with every problem as file:line:col: message')
    .action(async (file: string) => (await import('./run/agent')).checkConfig(file));

  program.addCommand(provisionCommand());
  registerSshCommands(program);
  program
    .command('completion')
    .description('print a bash completion script (devstreams completion > /etc/bash_completion.d/devstreams)')
    .action(async () => void process.stdout.write((await import('./completion')).bashCompletion(program)));

  return program;
}

export async function main(argv: string[]): Promise<void> {
  // Whoever read our output went away (`devstreams devices | head -1`): done, as a C program would
  // be by SIGPIPE, instead of an unhandled EPIPE with a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.OK);
  });
  const program = finishProgram(buildProgram());
  try {
    await program.parseAsync(argv);
  } catch (err) {
    reportFailure(err);
    // A process that cannot do its job exits now: whatever a failed start left behind (a broker, a
    // timer) must not keep it alive, or a supervisor never restarts it.
    process.exit();
  }
}

/** Sets the sysexits code for what stopped a command and prints one line naming the cause. */
function reportFailure(err: unknown): void {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    return;
  }
  if (isDevstreamsError(err) && err.code === 'ECONFIG' && 'problems' in err) {
    // A ConfigError (agent/config.ts): its message is every problem as file:line:col: message, one a line.
    process.stderr.write(`${err.message}\n`);
    process.exitCode = EXIT.CONFIG;
    return;
  }
  if (isDevstreamsError(err)) {
    process.stderr.write(`devstreams: ${err.message}\n`);
    process.exitCode = exitCodeFor(err.code);
    return;
  }
  const e = err as NodeJS.ErrnoException;
  if (isFdExhaustion(e)) {
    process.stderr.write(`devstreams: ${describeFdExhaustion(e)}\n`);
    process.exitCode = EXIT.UNAVAILABLE;
    return;
  }
  if (e?.code === 'EADDRINUSE' || e?.code === 'EACCES') {
    process.stderr.write(`devstreams: cannot listen: ${e.message}\n`);
    process.exitCode = EXIT.UNAVAILABLE;
    return;
  }
  process.stderr.write(`devstreams: ${e?.stack ?? String(err)}\n`);
  process.exitCode = EXIT.FAILURE;
}
