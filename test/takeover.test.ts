import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../core/log';
import { DeviceRegistry } from '../hub/device-registry';
import { HubDataDir } from '../hub/data-dir';
import { TAKEOVER_BACKOFF_MS } from '../agent/takeover';
import { Connect } from '../service/connect';
import { HubClient } from '../service/hub-client';
import { formatDeviceConnectionString, formatServiceConnectionString, parseServiceConnectionString } from '../wire';
import { runCli, startHubProcess, type CliProcess } from './helpers/cli';
import { until } from './helpers/stack';
import { roundTrip, startEchoServer } from './helpers/targets';

/**
 * Two agents with one device id (a cloned SD card), against a real hub process: the hub says so once,
 * naming both remote addresses, and the agent that keeps being replaced says why and backs off for
 * minutes instead of taking the connection back every second; the other one then stays connected.
 */
describe('same device id on two devices (real hub, two real agents)', () => {
  let dir: string;
  let hub: CliProcess & { port: number };
  let client: HubClient;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  const agents: CliProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'devstreams-takeover-'));
    hub = await startHubProcess(dir);
    const host = `127.0.0.1:${hub.port}`;
    const secrets = new HubDataDir(dir).secrets();
    client = new HubClient({
      service: parseServiceConnectionString(formatServiceConnectionString({ hostName: host, sharedAccessKeyName: secrets.service_policy_name, sharedAccessKey: secrets.service_policy_key })),
      caPem: readFileSync(join(dir, 'ca.pem')),
      caFile: join(dir, 'ca.pem'),
    });
    echo = await startEchoServer();
    const cs = formatDeviceConnectionString({ hostName: host, deviceId: 'clone', sharedAccessKey: new DeviceRegistry(new HubDataDir(dir)).add('clone').primary_key });
    const secret = join(dir, 'clone.secret');
    writeFileSync(secret, `${cs}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'clone.yaml'), `hub:\n  connection_string_file: ${secret}\n  ca: ${join(dir, 'ca.pem')}\nstatus_file: ${join(dir, 'clone.status.json')}\ntelemetry:\n  interval: off\nservices:\n  echo:\n    port: ${echo.port}\n`);
  });

  afterAll(async () => {
    for (const a of agents) await a.stop();
    client?.close();
    await echo?.close();
    await hub?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the hub logs both addresses once; the replaced agent warns and backs off; the other stays connected', async () => {
    for (let i = 0; i < 2; i++) agents.push(runCli(['agent', '--config', join(dir, 'clone.yaml')]));
    // Each takes the connection from the other; one of them sees the pattern first.
    const warned = await Promise.race(agents.map((a, i) => a.waitForLine(/another device is probably connected with this device id/, 60_000).then((line) => ({ i, line }))));
    const loser = agents[warned.i]!;
    const winner = agents[1 - warned.i]!;
    const warning = JSON.parse(warned.line) as { level: number; in_ms: number };
    expect(warning.level).toBe(40);
    expect(warning.in_ms).toBeGreaterThanOrEqual(TAKEOVER_BACKOFF_MS / 2);
    // The next reconnect waits that long, not the second or so of the ordinary backoff.
    await loser.waitForLine(new RegExp(`"in_ms":${warning.in_ms},"msg":"reconnecting to hub"`));

    // The other one gets the connection and keeps it: no drop for ten seconds, and streams reach it.
    const last = (text: string): number => winner.stderr.findLastIndex((l) => l.includes(text));
    await until(() => last('listening for stream requests') > last('hub connection lost'), 'the other agent to hold the connection', 60_000);
    const quietFrom = winner.stderr.length;
    const quietUntil = Date.now() + 10_000;
    await until(() => Date.now() > quietUntil, 'ten quiet seconds', 20_000);
    expect(winner.stderr.slice(quietFrom).filter((l) => l.includes('hub connection lost'))).toEqual([]);
    const port = new Connect({ client, deviceId: 'clone', service: 'echo', listen: { host: '127.0.0.1', port: 0 }, log: silentLogger() });
    await port.start();
    try {
      expect((await roundTrip(port.address.port, Buffer.from('one of us'))).toString()).toBe('one of us');
    } finally {
      await port.stop();
    }

    // The hub: one line (rate-limited) with both remote addresses, however many takeovers there were.
    const lines = hub.stderr.filter((l) => l.includes('device connected again while connected'));
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!) as { device: string; replaced_remote: string; new_remote: string };
    expect(line.device).toBe('clone');
    expect(line.replaced_remote).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(line.new_remote).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(line.new_remote).not.toBe(line.replaced_remote);
  }, 150_000);

  it('a hub that restarts three times in a row is not taken for a takeover: the agent reconnects each time, no warning', async () => {
    for (const a of agents.splice(0)) await a.stop();
    const agent = runCli(['agent', '--config', join(dir, 'clone.yaml')]);
    agents.push(agent);
    await agent.waitForLine(/listening for stream requests/);
    const port = hub.port;
    for (let i = 1; i <= 3; i++) {
      const listening = agent.stderr.filter((l) => l.includes('listening for stream requests')).length;
      await hub.stop();
      hub = await startHubProcess(dir, port);
      await until(() => agent.stderr.filter((l) => l.includes('listening for stream requests')).length > listening, `the agent back after restart ${i}`, 60_000);
    }
    expect(agent.stderr.filter((l) => l.includes('another device is probably connected'))).toEqual([]);
    // Each reconnect used the ordinary backoff (a minute at most), not the takeover wait.
    const waits = agent.stderr.filter((l) => l.includes('"msg":"reconnecting to hub"')).map((l) => (JSON.parse(l) as { in_ms: number }).in_ms);
    expect(waits.length).toBeGreaterThanOrEqual(3);
    for (const w of waits) expect(w).toBeLessThan(TAKEOVER_BACKOFF_MS / 2);
  }, 150_000);
});
