import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../agent/config';
import { HubClient } from '../service/hub-client';
import { parseServiceConnectionString } from '../wire';
import { lastLine, runCli, runCliToEnd, type CliProcess } from './helpers/cli';
import { startMosquitto, type Mosquitto } from './helpers/mosquitto';
import { until } from './helpers/stack';
import { fleetAgentYaml } from './helpers/fleet';
import { random, roundTrip, sha256, startEchoServer } from './helpers/targets';

/** Fleet mode as an operator runs it: the CLI bundle as real processes (hub, agent, connect) on mosquitto. */
describe('fleet mode from the command line', () => {
  let broker: Mosquitto;
  let dir: string;
  const procs: CliProcess[] = [];
  let echo: Awaited<ReturnType<typeof startEchoServer>>;

  beforeAll(async () => {
    broker = await startMosquitto({ 'devstreams-hub': 'hub-secret', 'pi-cli': 'device-secret' });
    dir = mkdtempSync(join(tmpdir(), 'devstreams-fleet-cli-'));
    echo = await startEchoServer();
  }, 30_000);

  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await echo?.close();
    await broker?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a hub the broker refuses stops at start and says why', async () => {
    writeFileSync(join(dir, 'wrong-password'), 'nope\n', { mode: 0o600 });
    const r = await runCliToEnd(['hub', '--data-dir', join(dir, 'refused'), '--listen', '127.0.0.1:0', '--broker', `mqtt://127.0.0.1:${broker.hubPort}`, '--broker-username', 'devstreams-hub', '--broker-password-file', join(dir, 'wrong-password')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/refused the hub: .*Not authorized/);
  }, 30_000);

  it('rejects broker options without --broker, and --mqtt-listen with it', async () => {
    const r = await runCliToEnd(['hub', '--data-dir', join(dir, 'x'), '--broker-username', 'u']);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/--broker-username needs --broker/);
    const both = await runCliToEnd(['hub', '--data-dir', join(dir, 'x'), '--broker', 'mqtt://127.0.0.1:1', '--mqtt-listen', '127.0.0.1:0']);
    expect(both.code).toBe(64);
    expect(both.stderr).toMatch(/--mqtt-listen and --broker do not go together/);
  });

  it('hub --broker, agent with a broker section, connect: a stream end to end', async () => {
    const dataDir = join(dir, 'hub');
    const hub = runCli(['hub', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--broker', `mqtt://127.0.0.1:${broker.hubPort}`, '--broker-username', 'devstreams-hub', '--instance-id', 'cli-1'], { DEVSTREAMS_BROKER_PASSWORD: 'hub-secret' });
    procs.push(hub);
    await hub.waitForLine(/^hub listening on /, 30_000);
    const deviceCs = lastLine((await runCliToEnd(['hub', 'add-device', 'pi-cli', '--data-dir', dataDir])).stdout);
    const serviceCs = lastLine((await runCliToEnd(['hub', 'service-string', '--data-dir', dataDir])).stdout);
    writeFileSync(join(dir, 'device-password'), 'device-secret\n', { mode: 0o600 });
    const configFile = join(dir, 'agent.yaml');
    writeFileSync(
      configFile,
      fleetAgentYaml({
        connectionString: deviceCs,
        hubCa: join(dataDir, 'ca.pem'),
        brokerUrl: `mqtts://127.0.0.1:${broker.devicePort}`,
        passwordFile: join(dir, 'device-password'),
        brokerCa: broker.caFile,
        services: { echo: echo.port },
      }),
      { mode: 0o600 },
    );
    const agent = runCli(['agent', '-c', configFile]);
    procs.push(agent);
    const client = new HubClient({ service: parseServiceConnectionString(serviceCs), caPem: readFileSync(join(dataDir, 'ca.pem')) });
    try {
      await until(async () => (await client.listDevices().catch(() => [])).some((d) => d.deviceId === 'pi-cli' && d.connectionState === 'Connected'), 'the hub to see pi-cli online', 30_000);
    } finally {
      client.close();
    }
    const connect = runCli(['connect', 'pi-cli', 'echo', '--listen', '127.0.0.1:0', '--ca', join(dataDir, 'ca.pem')], { DEVSTREAMS_CONNECTION_STRING: serviceCs });
    procs.push(connect);
    const port = Number(/:(\d+)/.exec(await connect.waitForLine(/^listening on /))![1]);
    const payload = random(512 * 1024);
    expect(sha256(await roundTrip(port, payload))).toBe(sha256(payload));
    // The agent's audit line names the request id the hub instance gave it.
    await agent.waitForLine(/"request_id":"cli-1-\d+"/);
  }, 60_000);

  it('check-config reports broker problems with file, line and column', () => {
    writeFileSync(join(dir, 'loose-password'), 'x\n', { mode: 0o644 });
    const yaml = ['hub:', '  connection_string: "HostName=h;DeviceId=d;SharedAccessKey=AAAA"', 'broker:', '  url: http://broker:1883', `  password_file: ${join(dir, 'loose-password')}`, '  topic_root: devstreams/+/{device_id}', ''].join('\n');
    const bad = parseAgentConfig(yaml, 'agent.yaml');
    expect(bad.config).toBeUndefined();
    expect(bad.problems.map((p) => `${p.line}:${p.col} ${p.message}`)).toEqual([expect.stringMatching(/^4:8 broker.url: must be mqtts:\/\/host:port/)]);
    const fixedUrl = parseAgentConfig(yaml.replace('http://broker:1883', 'mqtts://broker:8883'), 'agent.yaml');
    // In file order (check-config reports problems the way the file reads).
    expect(fixedUrl.problems.map((p) => `${p.line}:${p.col} ${p.message}`)).toEqual([
      expect.stringMatching(/^5:18 broker.password_file: .* accessible by group or others/),
      expect.stringMatching(/^6:15 broker.topic_root must not contain the MQTT wildcards/),
    ]);
    const plusId = parseAgentConfig(['hub:', '  connection_string: "HostName=h;DeviceId=a+b;SharedAccessKey=AAAA"', 'broker:', '  url: mqtt://broker:1883', ''].join('\n'), 'agent.yaml');
    expect(plusId.problems.map((p) => `${p.line}:${p.col} ${p.message}`)).toEqual([expect.stringMatching(/^4:3 broker.topic_root: device id "a\+b" cannot be a topic level/)]);
  });
});
