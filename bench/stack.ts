import { writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Proc, freePort, run, waitFor } from './procs';

const NODE = process.execPath;

export interface CliStack {
  dir: string;
  bundle: string;
  caFile: string;
  hub: Proc;
  agent: Proc;
  /** A `devstreams connect` process for one service of a device (bench-pi by default), with its local port. */
  connect(service: string, deviceId?: string): Promise<{ proc: Proc; port: number }>;
  /** Another agent, for another device, run by `command` with `args` first (a single executable, qemu …); logs to agent-<device>.log. */
  startAgent(command: string, deviceId: string, args?: string[], env?: NodeJS.ProcessEnv): Promise<Proc>;
  /** One gauge or counter from the agent's Prometheus endpoint (NaN when it cannot be read). */
  agentMetric(name: string): Promise<number>;
  stop(): Promise<void>;
}

/**
 * The real CLI processes on loopback, as a user would run them: `hub` (TLS), `hub add-device`,
 * `agent -c config.yaml` and one `connect` per service. Logs go to files in `dir`, at the default
 * level (info), because that is what users run.
 */
export async function startCliStack(opts: {
  dir: string;
  bundle: string;
  services: Record<string, number>;
  /** What runs hub, agent and connect instead of `node bundle`: a single executable as shipped. */
  executable?: string;
  /** The agent's environment beyond ours (the systemd unit's, for the executable as packaged). */
  agentEnv?: NodeJS.ProcessEnv;
}): Promise<CliStack> {
  const { dir, bundle } = opts;
  const dataDir = join(dir, 'hub');
  const procs: Proc[] = [];
  const [command, first] = opts.executable ? [opts.executable, []] : [NODE, [bundle]];
  const cli = (args: string[]): Promise<string> => run(command, [...first, ...args], { timeoutMs: 60_000 });
  // The hub's per-device request rate (default 1/s, burst 10) is raised to what is being measured.
  // So are the caps on connections still authenticating: every stream leg comes from 127.0.0.1, and
  // 1,000 streams opened at once are 2,000 TLS handshakes from one address.
  const rate = ['--device-stream-rate', '2000/5000', '--service-stream-rate', '2000/5000', '--unauthenticated-max', '16384/16384'];
  const hub = new Proc('hub', command, [...first, 'hub', '--data-dir', dataDir, '--listen', '127.0.0.1:0', ...rate], { logFile: join(dir, 'hub.log') });
  procs.push(hub);
  try {
    await hub.line(/^hub listening on (\S+)/, 60_000);
    const lastLine = (s: string): string => s.trim().split('\n').pop()!;
    const deviceCs = lastLine(await cli(['hub', 'add-device', 'bench-pi', '--data-dir', dataDir]));
    const serviceCs = lastLine(await cli(['hub', 'service-string', '--data-dir', dataDir]));
    const caFile = join(dataDir, 'ca.pem');
    const services = Object.entries(opts.services)
      .map(([name, port]) => `  ${name}:\n    port: ${port}\n`)
      .join('');
    const writeConfig = (file: string, cs: string, metricsPort?: number): void =>
      // Limits raised so 1,000 concurrent streams on one service are allowed; metrics on, so the
      // agent itself says how many streams it holds. Telemetry keeps its default (one message per
      // 5 min): leaving the key out keeps this config valid for older single executables too.
      writeFileSync(
        file,
        `hub:\n  connection_string: "${cs}"\n  ca: ${caFile}\nservices:\n${services}limits:\n  max_streams: 5000\n  max_streams_per_service: 5000\n` +
          (metricsPort ? `metrics_listen: 127.0.0.1:${metricsPort}\n` : ''),
        { mode: 0o600 },
      );
    const metricsPort = await freePort();
    const configFile = join(dir, 'agent.yaml');
    writeConfig(configFile, deviceCs, metricsPort);
    const agent = new Proc('agent', command, [...first, 'agent', '-c', configFile], { logFile: join(dir, 'agent.log'), ...(opts.agentEnv ? { env: opts.agentEnv } : {}) });
    procs.push(agent);
    const startAgent = async (command: string, deviceId: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Proc> => {
      const cs = lastLine(await cli(['hub', 'add-device', deviceId, '--data-dir', dataDir]));
      const file = join(dir, `agent-${deviceId}.yaml`);
      writeConfig(file, cs);
      const p = new Proc(`agent ${deviceId}`, command, [...args, 'agent', '-c', file], { logFile: join(dir, `agent-${deviceId}.log`), env });
      procs.push(p);
      return p;
    };
    const connect = async (service: string, deviceId = 'bench-pi'): Promise<{ proc: Proc; port: number }> => {
      const proc = new Proc(`connect ${deviceId} ${service}`, command, [...first, 'connect', deviceId, service, '--listen', '127.0.0.1:0', '--ca', caFile], {
        logFile: join(dir, `connect-${deviceId}-${service}.log`),
        env: { DEVSTREAMS_CONNECTION_STRING: serviceCs },
      });
      procs.push(proc);
      const m = await proc.line(/^listening on [^:]+:(\d+)/);
      return { proc, port: Number(m[1]) };
    };
    return {
      dir,
      bundle,
      caFile,
      hub,
      agent,
      connect,
      startAgent,
      agentMetric: (name) => scrape(metricsPort, name),
      async stop() {
        for (const p of procs.reverse()) await p.stop();
      },
    };
  } catch (err) {
    for (const p of procs.reverse()) await p.stop();
    throw err;
  }
}

export interface SocatChain {
  /** Where a client connects (plain TCP, like `connect`'s port). */
  port: number;
  /** The last hop (TLS in, plain TCP out): the agent's job. */
  lastHop: Proc;
  procs: Proc[];
  stop(): Promise<void>;
}

/**
 * The alternative a person could build by hand: three socat hops like connect → hub → agent, TLS on
 * the two legs that cross the "hub", with the hub's own certificate and key (same crypto), the
 * client side verifying it like ours does. socat runs with its defaults, as people run it, except a
 * listen backlog like Node's (socat's default of 5 drops connections when 100 arrive at once).
 */
export async function startSocatChain(opts: { dir: string; dataDir: string; target: number; name: string }): Promise<SocatChain> {
  const cert = join(opts.dataDir, 'server.pem');
  const key = join(opts.dataDir, 'server-key.pem');
  const ca = join(opts.dataDir, 'ca.pem');
  const [pA, pB, pC] = [await freePort(), await freePort(), await freePort()];
  const tlsServer = (port: number): string => `OPENSSL-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,backlog=511,cert=${cert},key=${key},verify=0`;
  const tlsClient = (port: number): string => `OPENSSL:127.0.0.1:${port},cafile=${ca},commonname=127.0.0.1`;
  const log = (hop: string): { logFile: string } => ({ logFile: join(opts.dir, `socat-${opts.name}-${hop}.log`) });
  const procs = [
    new Proc('socat agent-hop', 'socat', [tlsServer(pC), `TCP:127.0.0.1:${opts.target}`], log('c')),
    new Proc('socat hub-hop', 'socat', [tlsServer(pB), tlsClient(pC)], log('b')),
    new Proc('socat connect-hop', 'socat', [`TCP-LISTEN:${pA},bind=127.0.0.1,reuseaddr,fork,backlog=511`, tlsClient(pB)], log('a')),
  ];
  // socat prints nothing when it listens; wait until each port accepts.
  for (const port of [pC, pB, pA]) {
    await waitFor(
      () =>
        new Promise<boolean>((resolve) => {
          const s = connect({ host: '127.0.0.1', port });
          s.once('connect', () => {
            s.destroy();
            resolve(true);
          });
          s.once('error', () => resolve(false));
        }),
      `socat on ${port}`,
      10_000,
      50,
    );
  }
  return {
    port: pA,
    lastHop: procs[0]!,
    procs,
    async stop() {
      for (const p of procs) await p.stop();
    },
  };
}

function scrape(port: number, name: string): Promise<number> {
  return new Promise((resolve) => {
    const req = httpGet({ host: '127.0.0.1', port, path: '/metrics', timeout: 5000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => (text += s));
      res.on('end', () => {
        const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
        resolve(m ? Number(m[1]) : NaN);
      });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(NaN));
  });
}
