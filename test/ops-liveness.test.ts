import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import type { StatusSnapshot } from '../agent/status';
import { startProcessWorld, type ProcessWorld } from './helpers/process-world';
import { startStack, until } from './helpers/stack';
import { closedPort, startFlood, type FloodServer } from './helpers/targets';

const PING_MS = 500;
/** The documented bound is 2-2.5 ping intervals; a busy CI machine gets a wide margin on top. */
const CUT_WITHIN_MS = 2.5 * PING_MS + 8_000;

/** A device target that reads and drops everything (an upload's destination), counting what is open. */
async function startSink(): Promise<{ port: number; open: () => number; bytes: () => number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let bytes = 0;
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('data', (c: Buffer) => (bytes += c.length));
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    open: () => sockets.size,
    bytes: () => bytes,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

function readStatus(file: string): StatusSnapshot | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as StatusSnapshot;
  } catch {
    return undefined;
  }
}

/** How a client socket ended: 'reset' (ECONNRESET/EPIPE) or 'fin'. */
function endOf(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'reset' : `error ${err.code}`));
    socket.on('end', () => resolve('fin'));
  });
}

// What a test started; the teardown wakes a frozen process (world.stop sends SIGCONT) and ends it all.
let world: ProcessWorld | undefined;
let sink: Awaited<ReturnType<typeof startSink>> | undefined;
let flood: FloodServer | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await world?.stop();
  await sink?.close();
  await flood?.close();
  world = undefined;
  sink = undefined;
  flood = undefined;
});

/**
 * A hub that stops answering (SIGSTOP: its sockets stay open, nothing is read or sent) in the middle
 * of a busy stream. Both ends must notice within the liveness bound, reset their local sides and, on
 * the device, free the target connection and the max_streams slot.
 */
describe('a frozen hub during a busy stream', () => {

  const start = async (service: 'sink' | 'flood', port: number): Promise<{ statusFile: string }> => {
    const statusFile = join('/tmp', `devstreams-liveness-${process.pid}-${service}.json`);
    world = await startProcessWorld({
      services: { [service]: port },
      connectService: service,
      agentYaml: `ping_interval: ${PING_MS}ms\nstatus_file: ${statusFile}\n`,
      connectArgs: ['--ping-interval', `${PING_MS}ms`],
    });
    return { statusFile };
  };

  it('upload: connect and the agent both cut the stream within the bound; the target and the slot are freed', async () => {
    sink = await startSink();
    const { statusFile } = await start('sink', sink.port);
    const client = netConnect(world!.connectPort, '127.0.0.1');
    sockets.push(client);
    const ended = endOf(client);
    const block = Buffer.alloc(64 * 1024, 0x55);
    let writing = true;
    const pump = (): void => {
      while (writing && !client.destroyed) if (!client.write(block)) return void client.once('drain', pump);
    };
    client.on('connect', pump);
    await until(() => sink!.bytes() > 1024 * 1024 && sink!.open() === 1, 'the upload to flow');
    await until(() => readStatus(statusFile)?.streams.active.length === 1, 'the agent to count the stream');
    world!.hub.proc.kill('SIGSTOP');
    const t0 = Date.now();
    expect(await ended).toBe('reset');
    const clientCutMs = Date.now() - t0;
    writing = false;
    await until(() => sink!.open() === 0, 'the agent to close its target connection', CUT_WITHIN_MS);
    await until(() => readStatus(statusFile)?.streams.active.length === 0, 'the agent to free the slot', CUT_WITHIN_MS);
    const agentCutMs = Date.now() - t0;
    expect(clientCutMs).toBeLessThan(CUT_WITHIN_MS);
    expect(agentCutMs).toBeLessThan(CUT_WITHIN_MS);
    await world!.connect.waitForLine(/"level":40.*stream reset: connection to the hub lost \(1006\)/);
    await world!.agent.waitForLine(/"level":40.*stream closed: remote closed \(1006\)/);
    console.log(`frozen hub, upload: client reset after ${clientCutMs} ms, agent freed target and slot after ${agentCutMs} ms (ping ${PING_MS} ms)`);
  }, 90_000);

  it('download: connect and the agent both cut the stream within the bound; the target and the slot are freed', async () => {
    flood = await startFlood(Infinity, Buffer.alloc(64 * 1024, 0x5a));
    const { statusFile } = await start('flood', flood.port);
    const client = netConnect(world!.connectPort, '127.0.0.1');
    sockets.push(client);
    const ended = endOf(client);
    let got = 0;
    client.on('data', (c: Buffer) => (got += c.length));
    await until(() => got > 1024 * 1024, 'the download to flow');
    await until(() => readStatus(statusFile)?.streams.active.length === 1, 'the agent to count the stream');
    world!.hub.proc.kill('SIGSTOP');
    const t0 = Date.now();
    expect(await ended).toBe('reset');
    const clientCutMs = Date.now() - t0;
    await until(() => readStatus(statusFile)?.streams.active.length === 0, 'the agent to free the slot', CUT_WITHIN_MS);
    const agentCutMs = Date.now() - t0;
    expect(clientCutMs).toBeLessThan(CUT_WITHIN_MS);
    expect(agentCutMs).toBeLessThan(CUT_WITHIN_MS);
    await world!.agent.waitForLine(/"level":40.*stream closed: remote closed \(1006\)/);
    console.log(`frozen hub, download: client reset after ${clientCutMs} ms, agent freed target and slot after ${agentCutMs} ms (ping ${PING_MS} ms)`);
  }, 90_000);
});

/**
 * The other two processes vanishing: the hub is the one that must notice (it pings both legs) and
 * tell the side that is still there, which resets its local connection.
 */
describe('a frozen agent or connect during a busy stream', () => {

  it('agent frozen during a download: the hub cuts it within the bound and the client sees a reset', async () => {
    flood = await startFlood(Infinity, Buffer.alloc(64 * 1024, 0x5a));
    // Every process on the same interval, as in production (each one's pings are how the others know it is alive).
    world = await startProcessWorld({ services: { flood: flood.port }, connectService: 'flood', hubArgs: ['--ping-interval', `${PING_MS}ms`], connectArgs: ['--ping-interval', `${PING_MS}ms`], agentYaml: `ping_interval: ${PING_MS}ms\n` });
    const client = netConnect(world.connectPort, '127.0.0.1');
    sockets.push(client);
    const ended = endOf(client);
    let got = 0;
    client.on('data', (c: Buffer) => (got += c.length));
    await until(() => got > 1024 * 1024, 'the download to flow');
    world.agent.proc.kill('SIGSTOP');
    const t0 = Date.now();
    expect(await ended).toBe('reset');
    const cutMs = Date.now() - t0;
    expect(cutMs).toBeLessThan(CUT_WITHIN_MS);
    await world.connect.waitForLine(/"level":40.*stream reset: device connection lost/);
    console.log(`frozen agent, download: client reset after ${cutMs} ms (hub ping ${PING_MS} ms)`);
  }, 90_000);

  it('connect frozen during an upload: the hub cuts it within the bound; the agent frees its target and slot', async () => {
    sink = await startSink();
    const statusFile = join('/tmp', `devstreams-liveness-${process.pid}-frozen-connect.json`);
    world = await startProcessWorld({ services: { sink: sink.port }, connectService: 'sink', hubArgs: ['--ping-interval', `${PING_MS}ms`], connectArgs: ['--ping-interval', `${PING_MS}ms`], agentYaml: `status_file: ${statusFile}\nping_interval: ${PING_MS}ms\n` });
    const client = netConnect(world.connectPort, '127.0.0.1');
    sockets.push(client);
    client.on('error', () => undefined);
    const block = Buffer.alloc(64 * 1024, 0x55);
    const pump = (): void => {
      while (!client.destroyed) if (!client.write(block)) return void client.once('drain', pump);
    };
    client.on('connect', pump);
    await until(() => sink!.bytes() > 1024 * 1024 && sink!.open() === 1, 'the upload to flow');
    await until(() => readStatus(statusFile)?.streams.active.length === 1, 'the agent to count the stream');
    world.connect.proc.kill('SIGSTOP');
    const t0 = Date.now();
    await until(() => sink!.open() === 0, 'the agent to close its target connection', CUT_WITHIN_MS);
    await until(() => readStatus(statusFile)?.streams.active.length === 0, 'the agent to free the slot', CUT_WITHIN_MS);
    const cutMs = Date.now() - t0;
    expect(cutMs).toBeLessThan(CUT_WITHIN_MS);
    // The hub says why (4003) even when connect froze in the middle of a frame: it relays each piece as
    // a whole frame, so a close can always follow.
    await world.agent.waitForLine(/"level":40.*stream closed: remote closed: service connection lost \(4003\)/);
    console.log(`frozen connect, upload: agent freed target and slot after ${cutMs} ms (hub ping ${PING_MS} ms)`);
  }, 90_000);
});

describe('failed setups are counted and said', () => {
  it('a target that refuses is counted in the status snapshot and devstreams_stream_failures_total{reason="target-unavailable"}', async () => {
    const stack = await startStack();
    try {
      const agent = await stack.startAgent(`  gone:\n    port: ${await closedPort()}\nmetrics_listen: 127.0.0.1:0\n`);
      const failed = await stack.client.requestStream('pi-001', 'gone').then((s) => stack.client.openStream(s));
      const code = await new Promise<number>((r) => failed.once('close', (c: number) => r(c)).resume());
      expect(code).toBe(4001);
      await until(() => agent.snapshot().streams.failed?.['target-unavailable'] === 1, 'the failure to be counted');
      await until(() => agent.metricsPort > 0, 'metrics endpoint');
      const body = await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`).then((r) => r.text());
      expect(body).toMatch(/^devstreams_stream_failures_total\{reason="target-unavailable"\} 1$/m);
      expect(body).toMatch(/^devstreams_stream_failures_total\{reason="stream-failed"\} 0$/m);
    } finally {
      await stack.stop();
    }
  }, 60_000);
});

describe('the hub counts what used to be invisible under load', () => {
  it('refused streaming connections and stream handshake timeouts, on GET /metrics', async () => {
    const stack = await startStack({ handshakeTimeoutMs: 300, hub: { metricsListen: '127.0.0.1:0' } });
    try {
      await until(() => stack.hub.metricsPort > 0, 'the hub metrics endpoint');
      // A streaming connection without a token: refused (401).
      const refused = new WebSocket(`wss://${stack.hub.host}/bridges/nope`, { ca: stack.caPem });
      const status = await new Promise<number>((r) => refused.once('unexpected-response', (_req, res) => r(res.statusCode ?? 0)).once('error', () => r(0)));
      expect(status).toBe(401);
      // A stream whose service side never comes: the device's side waits, then 4002.
      await stack.startAgent(`  echo:\n    port: ${await closedPort()}\n`);
      await stack.client.requestStream('pi-001', 'echo');
      await until(() => stack.hub.counts().streamHandshakeTimeouts === 1, 'the handshake to time out');
      const body = await fetch(`http://127.0.0.1:${stack.hub.metricsPort}/metrics`).then((r) => r.text());
      expect(body).toMatch(/^devstreams_hub_streaming_refused_total 1$/m);
      expect(body).toMatch(/^devstreams_hub_stream_handshake_timeouts_total 1$/m);
      expect(body).toMatch(/^devstreams_hub_accept_errors_total 0$/m);
      expect(stack.hub.counts().streamingRefused).toBe(1);
    } finally {
      await stack.stop();
    }
  }, 60_000);
});
