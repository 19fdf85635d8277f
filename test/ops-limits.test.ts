import { get } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import type { Agent } from '../agent/agent';
import { watchStream } from '../agent/limits';
import { isDevstreamsError, parseDeviceConnectionString } from '../wire';
import { ControlChannel } from '../agent/control-channel';
import { startStack, testLogger, until, type Stack } from './helpers/stack';
import { roundTrip, startEchoServer } from './helpers/targets';

/** Opens a stream straight through the hub client and returns the open (paused) WebSocket. */
async function openWs(stack: Stack, service: string): Promise<WebSocket> {
  return stack.client.openStream(await stack.client.requestStream('pi-ops', service));
}

/** An open stream that reads (and drops) what comes, so its close handshake completes. */
async function holdWs(stack: Stack, service: string): Promise<WebSocket> {
  const ws = await openWs(stack, service);
  ws.resume();
  return ws;
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    ws.resume();
  });
}

function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

describe('limits, status, metrics and health telemetry (in-process hub and agent)', () => {
  let stack: Stack;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let agent: Agent;
  const held: WebSocket[] = [];

  beforeAll(async () => {
    stack = await startStack();
    echo = await startEchoServer();
    agent = await stack.startAgent(
      [
        `  echo:\n    port: ${echo.port}\n    max_streams: 2`,
        `  other:\n    port: ${echo.port}`,
        `  idle:\n    port: ${echo.port}\n    idle_timeout: 1s`,
        `  brief:\n    port: ${echo.port}\n    max_duration: 1s\n    idle_timeout: off`,
        'limits:\n  max_streams: 4\n  max_streams_per_service: 3',
        'telemetry:\n  interval: 10s',
        'metrics_listen: 127.0.0.1:0',
        '',
      ].join('\n'),
      { deviceId: 'pi-ops' },
    );
  });
  afterAll(async () => {
    for (const ws of held) ws.terminate();
    await stack?.stop();
    await echo?.close();
  });

  it('refuses a stream over the per-service limit and names the limit', async () => {
    held.push(await holdWs(stack, 'echo'), await holdWs(stack, 'echo'));
    await until(() => agent.activeStreams === 2, 'two open streams');
    // The hub counts them too, live, for `devstreams devices`.
    await until(async () => (await stack.client.listDevices()).find((d) => d.deviceId === 'pi-ops')?.activeStreams === 2, 'the hub to count two streams');
    const err = await stack.client.requestStream('pi-ops', 'echo').catch((e: unknown) => e);
    expect(isDevstreamsError(err, 'EDEVICE_REFUSED')).toBe(true);
    expect((err as Error).message).toMatch(/limit reached: 2 concurrent streams to service "echo" \(services\.echo\.max_streams\)/);
  });

  it('refuses a stream over the device-wide limit and names the limit', async () => {
    held.push(await holdWs(stack, 'other'), await holdWs(stack, 'other'));
    await until(() => agent.activeStreams === 4, 'four open streams');
    const err = await stack.client.requestStream('pi-ops', 'other').catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/limit reached: 4 concurrent streams on this device \(limits\.max_streams\)/);
  });

  it('frees the slot when a stream ends', async () => {
    const ws = held.shift()!;
    ws.close();
    await until(() => agent.activeStreams === 3, 'a slot to free up');
    const port = (await stack.connect('pi-ops', 'echo')).address.port;
    expect((await roundTrip(port, Buffer.from('after'))).toString()).toBe('after');
    for (const w of held.splice(0)) w.close();
    await until(() => agent.activeStreams === 0, 'all streams to close');
  });

  it('shows open streams and recent refusals in the status snapshot and metrics', async () => {
    const s = agent.snapshot();
    expect(s.connection.state).toBe('connected');
    expect(s.streams.refused_total).toBeGreaterThanOrEqual(2);
    expect(s.recent_refusals[0]!.reason).toMatch(/limit reached/);
    await until(() => agent.metricsPort > 0, 'metrics endpoint');
    const { status, body } = await httpGet(agent.metricsPort, '/metrics');
    expect(status).toBe(200);
    expect(body).toMatch(/^devstreams_hub_connected 1$/m);
    expect(body).toMatch(/^devstreams_stream_refusals_total [2-9]\d*$/m);
    expect(body).toMatch(/^devstreams_stream_bytes_total\{direction="to_target"\} [1-9]\d*$/m);
    expect((await httpGet(agent.metricsPort, '/')).status).toBe(404);
  });

  it('closes an idle stream with 4004 and says which limit', async () => {
    // Timed from before the request: the agent's idle timer cannot start earlier, but may start well
    // before our side of the stream is open (a busy machine), so that is no lower bound.
    const started = Date.now();
    const ws = await openWs(stack, 'idle');
    const c = await closed(ws);
    expect(c.code).toBe(4004);
    expect(c.reason).toMatch(/idle for 1s \(idle_timeout\)/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('closes a busy stream at its maximum duration with 4004', async () => {
    const ws = await openWs(stack, 'brief');
    // Keep it busy: bytes every 100 ms, echoed back; only the duration limit can end it.
    const ticker = setInterval(() => ws.send(Buffer.from('tick')), 100);
    const c = await closed(ws).finally(() => clearInterval(ticker));
    expect(c.code).toBe(4004);
    expect(c.reason).toMatch(/maximum duration 1s reached \(max_duration\)/);
  });

  it('publishes health telemetry that the hub lists with the device', async () => {
    // One health message goes out right after connecting.
    let devices = await stack.client.listDevices();
    await until(async () => {
      devices = await stack.client.listDevices();
      return devices.some((d) => d.deviceId === 'pi-ops' && d.health !== null);
    }, 'health telemetry at the hub');
    const d = devices.find((x) => x.deviceId === 'pi-ops')!;
    expect(d.connectionState).toBe('Connected');
    expect(d.lastActivityTime).not.toBeNull();
    const h = d.health as { schema: string; device: string; memory: { total_bytes: number }; agent: { active_streams: number }; uptime_s: number };
    expect(h.schema).toBe('devstreams.health/1');
    expect(h.device).toBe('pi-ops');
    expect(h.memory.total_bytes).toBeGreaterThan(0);
    expect(h.uptime_s).toBeGreaterThan(0);
    expect(typeof h.agent.active_streams).toBe('number');
  });

  it('keeps an open stream through a control-channel reconnect (SAS renewal path)', async () => {
    const port = (await stack.connect('pi-ops', 'other')).address.port;
    const socket: Socket = netConnect({ host: '127.0.0.1', port });
    const got: Buffer[] = [];
    socket.on('data', (c: Buffer) => got.push(c));
    socket.write('before ');
    await until(() => Buffer.concat(got).toString() === 'before ', 'first echo');
    const before = agent.snapshot().connection.reconnects;
    // The private path the token renewal timer takes: close the MQTT connection and open a new one.
    (agent as unknown as { control: { reconnectNow(): void } }).control.reconnectNow();
    await until(() => agent.snapshot().connection.reconnects > before && agent.connected, 'control channel to reconnect');
    socket.write('after');
    await until(() => Buffer.concat(got).toString() === 'before after', 'echo after the reconnect');
    socket.destroy();
  });

  it('marks a device offline when its agent goes away', async () => {
    await agent.stop();
    await until(async () => (await stack.client.listDevices()).find((d) => d.deviceId === 'pi-ops')?.connectionState === 'Disconnected', 'device offline');
  });
});

describe('watchStream', () => {
  it('expires on idle, and activity postpones it', async () => {
    let reason = '';
    const t = watchStream({ maxStreams: 1, idleTimeoutMs: 300, maxDurationMs: 0 }, (r) => (reason = r));
    const keepAlive = setInterval(() => t.activity(), 50);
    await new Promise((r) => setTimeout(r, 500));
    expect(reason).toBe('');
    clearInterval(keepAlive);
    await until(() => reason !== '', 'idle expiry', 5_000);
    expect(reason).toMatch(/idle/);
    t.stop();
  });
});

describe('SAS token renewal', () => {
  it('reconnects with a fresh token before the old one expires, again and again', async () => {
    const stack = await startStack();
    // A 3 s token is renewed at 80 %: about every 2.4 s. Each renewal must be accepted by the hub.
    const ch = new ControlChannel({ device: parseDeviceConnectionString(stack.deviceConnectionString('pi-renew')), caPem: stack.caPem, log: testLogger('control'), tokenLifetimeS: 3 });
    try {
      ch.start();
      await until(() => ch.reconnects >= 2 && ch.listening, 'two renewals', 30_000);
      expect(ch.lastError).toBeUndefined();
    } finally {
      await ch.stop();
      await stack.stop();
    }
  }, 60_000);
});
