import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from './free-port';

/** The NATS side we ship: node.conf and users.conf, rewritten per node (names, ports, store dir, users). */
export const NATS_CONFIG_DIR = resolve(__dirname, '../../config/nats');

export interface NatsNode {
  name: string;
  mqttPort: number;
  proc: ChildProcess;
  log: string[];
}

export interface NatsCluster {
  dir: string;
  nodes: NatsNode[];
  stop: () => Promise<void>;
}

/**
 * Three nats-server processes (Debian's 2.9.10) in one cluster on loopback, JetStream on, MQTT on
 * each. `users` are device ids with passwords; the hub user is `devstreams-hub`. The device entry of
 * the shipped users.conf (pi-0001) is repeated for each device.
 */
export async function startNatsCluster(hubPassword: string, devices: Record<string, string>, opts: { configDir?: string; quiet?: boolean } = {}): Promise<NatsCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-nats-'));
  const configDir = opts.configDir ?? NATS_CONFIG_DIR;
  const shippedNode = readFileSync(join(configDir, 'node.conf'), 'utf8');
  const shippedUsers = readFileSync(join(configDir, 'users.conf'), 'utf8');
  const deviceEntry = /^ *\{ user: pi-0001,[\s\S]*?^ *\} \}\n/m.exec(shippedUsers)?.[0];
  if (!deviceEntry) throw new Error('shipped users.conf has no pi-0001 entry');
  const quote = (s: string): string => JSON.stringify(s);
  const users = shippedUsers
    .replace(deviceEntry, Object.entries(devices).map(([id, pw]) => deviceEntry.replaceAll('pi-0001', id).replace('"REPLACE-ME"', quote(pw))).join(''))
    .replace('"REPLACE-ME"', quote(hubPassword));
  const usersFile = join(dir, 'users.conf');
  writeFileSync(usersFile, users, { mode: 0o600 });

  const ports = [];
  for (let i = 0; i < 3; i++) ports.push({ client: await freePort(), cluster: await freePort(), mqtt: await freePort() });
  const nodes: NatsNode[] = [];
  const exits: Promise<void>[] = [];
  for (let i = 0; i < 3; i++) {
    const name = `node-${i + 1}`;
    const p = ports[i]!;
    const rewrite = (text: string, from: RegExp, to: string): string => {
      if (!from.test(text)) throw new Error(`shipped node.conf has no line matching ${from}`);
      return text.replace(from, to);
    };
    let conf = shippedNode;
    conf = rewrite(conf, /^server_name: .*$/m, `server_name: ${name}`);
    conf = rewrite(conf, /^listen: .*$/m, `listen: 127.0.0.1:${p.client}`);
    conf = rewrite(conf, /store_dir: ".*"/, `store_dir: ${quote(join(dir, name))}`);
    conf = rewrite(conf, /^( *)listen: 127\.0\.0\.1:6222$/m, `$1listen: 127.0.0.1:${p.cluster}`);
    conf = rewrite(conf, /routes: \[[^\]]*\]/, `routes: [\n${ports.map((q) => `    nats-route://127.0.0.1:${q.cluster}`).join('\n')}\n  ]`);
    conf = rewrite(conf, /^( *)listen: 127\.0\.0\.1:1883$/m, `$1listen: 127.0.0.1:${p.mqtt}`);
    // nats-server resolves includes against the config file's directory: users.conf sits beside it.
    conf = rewrite(conf, /^include \.\/users\.conf$/m, 'include ./users.conf');
    mkdirSync(join(dir, name), { recursive: true });
    const confFile = join(dir, `${name}.conf`);
    writeFileSync(confFile, conf);
    const proc = spawn('nats-server', ['-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    const log: string[] = [];
    const onData = (chunk: Buffer): void => {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        // Quiet (load runs): keep only what readiness needs and errors, not a line per connection.
        if (opts.quiet && !/Listening for MQTT|metadata leader|\[(ERR|FTL)\]/.test(line)) continue;
        if (log.length < 5000) log.push(line);
        if (process.env.TEST_LOG) process.stderr.write(`[${name}] ${line}\n`);
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    exits.push(new Promise<void>((r) => proc.once('exit', () => r())));
    nodes.push({ name, mqttPort: p.mqtt, proc, log });
  }
  const cluster: NatsCluster = {
    dir,
    nodes,
    async stop() {
      for (const n of nodes) if (n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill('SIGTERM');
      const t = setTimeout(() => nodes.forEach((n) => n.proc.kill('SIGKILL')), 10_000);
      await Promise.all(exits);
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  // Ready when every node listens for MQTT and the JetStream meta group has a leader (MQTT needs it).
  const deadline = Date.now() + 60_000;
  const ready = (): boolean => nodes.every((n) => n.log.some((l) => /Listening for MQTT clients/.test(l))) && nodes.some((n) => n.log.some((l) => /JetStream cluster new metadata leader|Self is new JetStream cluster metadata leader/.test(l)));
  while (!ready()) {
    const dead = nodes.find((n) => n.proc.exitCode !== null);
    if (dead || Date.now() > deadline) {
      await cluster.stop();
      throw new Error(`NATS cluster did not come up${dead ? ` (${dead.name} exited)` : ''}:\n${nodes.map((n) => n.log.slice(-10).join('\n')).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return cluster;
}
