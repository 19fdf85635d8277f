/**
 * Fleet load (issue 6, docs/scaling.md): N simulated agents in this one process, each a real MQTT
 * connection over TLS to mosquitto (shipped config and ACL) with its own user and password, answering
 * stream requests and joining the streams over wss; a real hub process (the CLI bundle) in fleet mode
 * on the same broker; stream requests driven from the service side. Reports connected devices, the
 * connect ramp, stream setup p50/p99 (request → accepted, request → first echoed byte) and errors.
 *
 * Usage: node bench/load-devices.mjs [--broker mosquitto|nats] [--devices N] [--requests R] [--concurrency C] [--out DIR]
 *   --broker nats: a three-node NATS cluster (config/nats), devices on node 1 (plain MQTT on
 *   loopback: NATS's MQTT TLS is not set up here), the hub on node 2.
 *   (load-devices.mjs bundles this file into dist/load-devices.cjs and runs it)
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect as mqttConnect, type MqttClient } from 'mqtt';
import type WebSocket from 'ws';
import { dialStream } from '../core/stream-dial';
import { HubClient } from '../service/hub-client';
import {
  DEVICE_STATUS_OFFLINE,
  DEVICE_STATUS_ONLINE,
  deviceStatusTopic,
  deviceTopicRoot,
  formatStreamResponseTopic,
  parseServiceConnectionString,
  parseStreamRequestTopic,
  streamRequestSubscription,
  DEFAULT_DEVICE_TOPIC_ROOT,
} from '../wire';
import { startMosquitto } from '../test/helpers/mosquitto';
import { startNatsCluster } from '../test/helpers/nats-cluster';
import { Proc, freePort, rssBytes, run, waitFor } from './procs';
import { dist, round, type Dist } from './stats';

const NODE = process.execPath;
const HUB_USER = 'devstreams-hub';
/** Devices connecting at once while ramping up (a fleet does not all dial in the same millisecond either). */
const CONNECT_CONCURRENCY = 100;
const PING = Buffer.from('devstreams-load-ping-0123456789');

interface Options {
  broker: 'mosquitto' | 'nats';
  devices: number;
  requests: number;
  concurrency: number;
  out: string;
  bundle: string;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { broker: 'mosquitto', devices: 200, requests: 0, concurrency: 50, out: resolve('bench/results'), bundle: resolve('dist/devstreams.cjs') };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--broker':
        if (v !== 'mosquitto' && v !== 'nats') throw new Error('--broker is mosquitto or nats');
        opts.broker = v;
        i++;
        break;
      case '--devices':
        opts.devices = Number(v);
        i++;
        break;
      case '--requests':
        opts.requests = Number(v);
        i++;
        break;
      case '--concurrency':
        opts.concurrency = Number(v);
        i++;
        break;
      case '--out':
        opts.out = resolve(v!);
        i++;
        break;
      default:
        throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!(opts.devices >= 1)) throw new Error('--devices must be a positive number');
  if (!opts.requests) opts.requests = Math.min(2000, opts.devices * 2);
  return opts;
}

/** One simulated agent: the shipped layout, its own credentials, a Last Will, echo on every stream. */
class SimDevice {
  client?: MqttClient;
  online = false;
  streams = 0;
  errors = 0;
  private readonly root: string;

  constructor(
    readonly id: string,
    private readonly password: string,
    private readonly brokerUrl: string,
    private readonly brokerCa: Buffer | undefined,
    private readonly hubCa: Buffer,
  ) {
    this.root = deviceTopicRoot(DEFAULT_DEVICE_TOPIC_ROOT, id);
  }

  /** Resolves once subscribed and announced online. */
  start(): Promise<void> {
    return new Promise((resolveStart, reject) => {
      const client = mqttConnect(this.brokerUrl, {
        clientId: this.id,
        username: this.id,
        password: this.password,
        ...(this.brokerCa ? { ca: this.brokerCa } : {}),
        protocolVersion: 4,
        clean: true,
        keepalive: 120,
        reconnectPeriod: 0,
        connectTimeout: 60_000,
        will: { topic: deviceStatusTopic(this.root), payload: Buffer.from(DEVICE_STATUS_OFFLINE), qos: 1, retain: true },
      });
      this.client = client;
      client.once('error', reject);
      client.once('connect', () => {
        client.subscribe(streamRequestSubscription(this.root), { qos: 0 }, (err) => {
          if (err) return reject(err);
          client.publish(deviceStatusTopic(this.root), DEVICE_STATUS_ONLINE, { qos: 1, retain: true }, (perr) => {
            if (perr) return reject(perr);
            this.online = true;
            resolveStart();
          });
        });
      });
      client.on('close', () => {
        this.online = false;
      });
      client.on('message', (topic) => this.onRequest(topic));
    });
  }

  private onRequest(topic: string): void {
    let req;
    try {
      req = parseStreamRequestTopic(topic, this.root);
    } catch {
      this.errors++;
      return;
    }
    this.client?.publish(formatStreamResponseTopic(200, req.requestId, this.root), '', { qos: 0 });
    const ws: WebSocket = dialStream(req.url, req.authToken, this.hubCa);
    this.streams++;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) ws.send(data);
    });
    ws.on('error', () => {
      this.errors++;
    });
  }

  stop(): Promise<void> {
    const c = this.client;
    if (!c) return Promise.resolve();
    return new Promise((r) => c.end(true, {}, () => r()));
  }
}

interface Result {
  devices: number;
  connected: number;
  connect_errors: number;
  ramp_s: number;
  connect_ms: Dist;
  hub_sees_online: number;
  requests: number;
  concurrency: number;
  ok: number;
  errors: Record<string, number>;
  accept_ms: Dist;
  first_byte_ms: Dist;
  requests_per_s: number;
  /** The same, one request at a time before the loaded run. */
  serial: { requests: number; ok: number; errors: Record<string, number>; accept_ms: Dist; first_byte_ms: Dist };
  hub_rss_mb: number;
  broker: string;
  /** All broker processes together (three for NATS). */
  broker_rss_mb: number;
  loader_rss_mb: number;
  machine: { cpus: number; model: string; loadavg_before: number[] };
  when: string;
}

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

const LATENCY_REQUESTS = 100;

interface Driven {
  ok: number;
  errors: Record<string, number>;
  acceptMs: number[];
  firstByteMs: number[];
  driveS: number;
}

/** `count` stream requests over the online devices, `concurrency` at a time: each sends a ping and waits for its echo. */
async function drive(client: HubClient, online: SimDevice[], count: number, concurrency: number): Promise<Driven> {
  const acceptMs: number[] = [];
  const firstByteMs: number[] = [];
  const errors: Record<string, number> = {};
  let ok = 0;
  const start = performance.now();
  await pool(
    Array.from({ length: count }, (_, i) => online[i % online.length]!),
    concurrency,
    async (sim) => {
      const t0 = performance.now();
      let ws: WebSocket | undefined;
      try {
        const accepted = await client.requestStream(sim.id, 'echo');
        acceptMs.push(performance.now() - t0);
        ws = await client.openStream(accepted);
        const echoed = new Promise<void>((res, rej) => {
          const timer = setTimeout(() => rej(Object.assign(new Error('no echo in 30 s'), { code: 'ENOECHO' })), 30_000);
          ws!.on('message', (_data, isBinary) => {
            if (!isBinary) return; // the hub's hello (extension negotiation)
            clearTimeout(timer);
            res();
          });
          ws!.once('close', () => {
            clearTimeout(timer);
            rej(Object.assign(new Error('closed before echo'), { code: 'ECLOSED' }));
          });
        });
        ws.resume();
        ws.send(PING);
        await echoed;
        firstByteMs.push(performance.now() - t0);
        ok++;
      } catch (err) {
        const code = String((err as { code?: unknown }).code ?? 'EUNKNOWN');
        errors[code] = (errors[code] ?? 0) + 1;
      } finally {
        ws?.close(1000);
      }
    },
  );
  return { ok, errors, acceptMs, firstByteMs, driveS: (performance.now() - start) / 1000 };
}

interface LoadBroker {
  deviceUrl: string;
  hubUrl: string;
  caPem?: Buffer;
  pids: number[];
  stop: () => Promise<void>;
}

async function startMosquittoBroker(ids: string[], password: (id: string) => string): Promise<LoadBroker> {
  const m = await startMosquitto(
    {},
    {
      quiet: true,
      // One mosquitto_passwd run hashes every password (-U converts a plain-text file in place).
      passwordFile: (file) => {
        appendFileSync(file, [`${HUB_USER}:hub-secret\n`, ...ids.map((id) => `${id}:${password(id)}\n`)].join(''));
        execFileSync('mosquitto_passwd', ['-U', file], { stdio: 'ignore' });
      },
      extraConf: 'max_keepalive 300\n',
      configDir: resolve('config/mosquitto'),
    },
  );
  return { deviceUrl: `mqtts://127.0.0.1:${m.devicePort}`, hubUrl: `mqtt://127.0.0.1:${m.hubPort}`, caPem: m.caPem, pids: [m.proc.pid!], stop: () => m.stop() };
}

async function startNatsBroker(ids: string[], password: (id: string) => string): Promise<LoadBroker> {
  const c = await startNatsCluster('hub-secret', Object.fromEntries(ids.map((id) => [id, password(id)])), { configDir: resolve('config/nats'), quiet: true });
  return { deviceUrl: `mqtt://127.0.0.1:${c.nodes[0]!.mqttPort}`, hubUrl: `mqtt://127.0.0.1:${c.nodes[1]!.mqttPort}`, pids: c.nodes.map((n) => n.proc.pid!), stop: () => c.stop() };
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-load-'));
  const loadBefore = loadavg().map((v) => round(v, 2));
  const ids = Array.from({ length: opts.devices }, (_, i) => `sim-${String(i).padStart(5, '0')}`);
  const password = (id: string): string => `pw-${id}`;
  const log = (msg: string): void => void process.stderr.write(`[load] ${msg}\n`);

  log(`starting ${opts.broker} with ${opts.devices} device users`);
  const broker = opts.broker === 'nats' ? await startNatsBroker(ids, password) : await startMosquittoBroker(ids, password);
  let hub: Proc | undefined;
  const sims: SimDevice[] = [];
  try {
    const dataDir = join(dir, 'hub');
    const hubPort = await freePort();
    writeFileSync(join(dir, 'broker-password'), 'hub-secret\n', { mode: 0o600 });
    hub = new Proc(
      'hub',
      NODE,
      [opts.bundle, 'hub', '--data-dir', dataDir, '--listen', `127.0.0.1:${hubPort}`, '--broker', broker.hubUrl, '--broker-username', HUB_USER, '--broker-password-file', join(dir, 'broker-password'), '--device-stream-rate', '1000/1000', '--service-stream-rate', '100000/100000'],
      { logFile: join(dir, 'hub.log'), env: { DEVSTREAMS_LOG_LEVEL: 'warn' } },
    );
    await hub.line(/^hub listening on (\S+)/, 60_000);
    const serviceCs = (await run(NODE, [opts.bundle, 'hub', 'service-string', '--data-dir', dataDir])).trim().split('\n').pop()!;
    const hubCa = readFileSync(join(dataDir, 'ca.pem'));
    const client = new HubClient({ service: parseServiceConnectionString(serviceCs), caPem: hubCa });

    log(`connecting ${opts.devices} simulated devices (${CONNECT_CONCURRENCY} at a time)`);
    const connectMs: number[] = [];
    let connectErrors = 0;
    const rampStart = performance.now();
    await pool(ids, CONNECT_CONCURRENCY, async (id) => {
      const sim = new SimDevice(id, password(id), broker.deviceUrl, broker.caPem, hubCa);
      sims.push(sim);
      const t0 = performance.now();
      try {
        await sim.start();
        connectMs.push(performance.now() - t0);
      } catch {
        connectErrors++;
      }
    });
    const rampS = (performance.now() - rampStart) / 1000;
    const connected = sims.filter((s) => s.online).length;
    log(`${connected} connected in ${round(rampS, 1)} s; waiting for the hub to see them`);
    let hubSees = 0;
    await waitFor(
      async () => {
        hubSees = (await client.listDevices().catch(() => [])).filter((d) => d.connectionState === 'Connected').length;
        return hubSees >= connected;
      },
      'the hub to see every connected device online',
      120_000,
      500,
    ).catch((err: Error) => log(err.message));

    const online = sims.filter((s) => s.online);
    // First one at a time (setup latency with no queueing), then many at once (throughput).
    log(`${LATENCY_REQUESTS} stream requests one at a time`);
    const serial = await drive(client, online, LATENCY_REQUESTS, 1);
    log(`${opts.requests} stream requests, ${opts.concurrency} at a time`);
    const loaded = await drive(client, online, opts.requests, opts.concurrency);
    client.close();
    const { ok, errors, acceptMs, firstByteMs, driveS } = loaded;

    const result: Result = {
      devices: opts.devices,
      connected,
      connect_errors: connectErrors,
      ramp_s: round(rampS, 2),
      connect_ms: dist(connectMs),
      hub_sees_online: hubSees,
      requests: opts.requests,
      concurrency: opts.concurrency,
      ok,
      errors,
      accept_ms: dist(acceptMs),
      first_byte_ms: dist(firstByteMs),
      requests_per_s: round(ok / driveS, 1),
      serial: { requests: LATENCY_REQUESTS, ok: serial.ok, errors: serial.errors, accept_ms: dist(serial.acceptMs), first_byte_ms: dist(serial.firstByteMs) },
      hub_rss_mb: round(rssBytes(hub.pid) / 1e6, 1),
      broker: opts.broker,
      broker_rss_mb: round(broker.pids.reduce((sum, pid) => sum + rssBytes(pid), 0) / 1e6, 1),
      loader_rss_mb: round(process.memoryUsage().rss / 1e6, 1),
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? '?', loadavg_before: loadBefore },
      when: new Date().toISOString(),
    };
    mkdirSync(opts.out, { recursive: true });
    const file = join(opts.out, `load-devices-${opts.broker}-${opts.devices}.json`);
    writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(
      [
        `| broker | devices | connected | hub sees | ramp | connect p50/p99 | one at a time: first byte p50/p99 | requests ok/total | accept p50/p99 | first byte p50/p99 | req/s | errors |`,
        `|---|---|---|---|---|---|---|---|---|---|---|---|`,
        `| ${opts.broker} | ${opts.devices} | ${connected} | ${hubSees} | ${result.ramp_s} s | ${round(result.connect_ms.p50, 1)}/${round(result.connect_ms.p99, 1)} ms | ${round(result.serial.first_byte_ms.p50, 1)}/${round(result.serial.first_byte_ms.p99, 1)} ms | ${ok}/${opts.requests} | ${round(result.accept_ms.p50, 1)}/${round(result.accept_ms.p99, 1)} ms | ${round(result.first_byte_ms.p50, 1)}/${round(result.first_byte_ms.p99, 1)} ms | ${result.requests_per_s} | ${JSON.stringify(errors)} |`,
        `(${file}; hub RSS ${result.hub_rss_mb} MB, ${opts.broker} RSS ${result.broker_rss_mb} MB, load tool RSS ${result.loader_rss_mb} MB)`,
        '',
      ].join('\n'),
    );
  } finally {
    await Promise.all(sims.map((s) => s.stop()));
    await hub?.stop();
    await broker.stop();
    if (process.env.LOAD_KEEP) log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`load-devices failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
