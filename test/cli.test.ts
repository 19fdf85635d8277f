import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastLine, runCli, runCliToEnd, startHubProcess, type CliProcess } from './helpers/cli';
import { closedPort, random, roundTrip, sendAndHalfClose, sha256, startEchoServer } from './helpers/targets';

/** The CLI exactly as a person runs it: hub, add-device, service-string, agent, connect, as processes. */
describe('devstreams CLI end to end', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-cli-'));
  const dataDir = join(dir, 'hub');
  let hub: CliProcess & { port: number };
  let agent: CliProcess;
  let connect: CliProcess;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let connectPort: number;
  let serviceString: string;

  beforeAll(async () => {
    echo = await startEchoServer();
    hub = await startHubProcess(dataDir);
    const add = await runCliToEnd(['hub', 'add-device', 'pi-cli', '--data-dir', dataDir]);
    expect(add.code).toBe(0);
    const deviceString = lastLine(add.stdout);
    expect(deviceString).toMatch(new RegExp(`^HostName=127\\.0\\.0\\.1:${hub.port};DeviceId=pi-cli;SharedAccessKey=[A-Za-z0-9+/=]+$`));
    const svc = await runCliToEnd(['hub', 'service-string', '--data-dir', dataDir]);
    serviceString = lastLine(svc.stdout);
    expect(serviceString).toMatch(/^HostName=.*;SharedAccessKeyName=service;SharedAccessKey=/);
    const config = join(dir, 'agent.yaml');
    writeFileSync(config, `hub:\n  connection_string: "${deviceString}"\n  ca: ${join(dataDir, 'ca.pem')}\nservices:\n  echo:\n    port: ${echo.port}\n  gone:\n    port: ${await closedPort()}\n`);
    agent = runCli(['agent', '--config', config]);
    await agent.waitForLine(/listening for stream requests/); // subscribed, not merely connected
    connect = runCli(['connect', 'pi-cli', 'echo', '--listen', '0', '--ca', join(dataDir, 'ca.pem')], { DEVSTREAMS_CONNECTION_STRING: serviceString });
    const line = await connect.waitForLine(/^listening on /);
    connectPort = Number(/:(\d+),/.exec(line)![1]);
  });

  afterAll(async () => {
    await connect?.stop();
    await agent?.stop();
    await hub?.stop();
    await echo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('tunnels a TCP connection, byte-exact', async () => {
    const payload = random(4 * 1024 * 1024);
    expect(sha256(await roundTrip(connectPort, payload))).toBe(sha256(payload));
  });

  it('writes one JSON audit line per stream, without stream bytes', async () => {
    await roundTrip(connectPort, Buffer.from('secret-payload-marker'));
    const line = await agent.waitForLine(/"audit":"stream".*"outcome":"closed"/);
    const rec = JSON.parse(line);
    expect(rec).toMatchObject({ service: 'echo', target: `127.0.0.1:${echo.port}`, outcome: 'closed' });
    expect(typeof rec.request_id).toBe('string');
    expect(typeof rec.duration_ms).toBe('number');
    expect(agent.stderr.join('\n')).not.toContain('secret-payload-marker');
    expect(agent.stderr.join('\n')).not.toMatch(/SharedAccessSignature|SharedAccessKey=/);
  });

  it('shows the service side why a stream failed, and keeps listening', async () => {
    const gone = runCli(['connect', 'pi-cli', 'gone', '--listen', '0', '--ca', join(dataDir, 'ca.pem')], { DEVSTREAMS_CONNECTION_STRING: serviceString });
    const port = Number(/:(\d+),/.exec(await gone.waitForLine(/^listening on /))![1]);
    await sendAndHalfClose(port, Buffer.from('x'));
    await gone.waitForLine(/refused the connection/);
    const nope = runCli(['connect', 'pi-cli', 'nope', '--listen', '0', '--ca', join(dataDir, 'ca.pem')], { DEVSTREAMS_CONNECTION_STRING: serviceString });
    const nopePort = Number(/:(\d+),/.exec(await nope.waitForLine(/^listening on /))![1]);
    await sendAndHalfClose(nopePort, Buffer.from('x'));
    await nope.waitForLine(/refused the stream to service .*nope.*not in the device's allowlist/);
    await sendAndHalfClose(nopePort, Buffer.from('x'));
    expect(nope.proc.exitCode).toBeNull();
    await gone.stop();
    await nope.stop();
  });

  it('exits 0 on SIGTERM', async () => {
    const c = runCli(['connect', 'pi-cli', 'echo', '--listen', '0', '--ca', join(dataDir, 'ca.pem')], { DEVSTREAMS_CONNECTION_STRING: serviceString });
    await c.waitForLine(/^listening on /);
    expect(await c.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  });

  it('check-config: exit 0 for a good file, 78 with file:line:col for every problem', async () => {
    const good = join(dir, 'agent.yaml');
    expect((await runCliToEnd(['check-config', good])).code).toBe(0);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'hub:\n  connection_string: "HostName=h;DeviceId=d"\n  colour: blue\nservices:\n  ssh:\n    port: 70000\n');
    const r = await runCliToEnd(['check-config', bad]);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`${bad}:3:3: hub.colour is not a known setting`);
    expect(r.stderr).toContain(`${bad}:6:11: services.ssh.port`);
  });

  it('connect without credentials says what to set, exit 64', async () => {
    const r = await runCliToEnd(['connect', 'pi-cli', 'echo', '--listen', '0'], { DEVSTREAMS_CONNECTION_STRING: '' });
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/set DEVSTREAMS_CONNECTION_STRING/);
  });

  it('reuses the data directory on restart: same CA, same keys', async () => {
    const svcAgain = lastLine((await runCliToEnd(['hub', 'service-string', '--data-dir', dataDir])).stdout);
    expect(svcAgain).toBe(serviceString);
  });
});
