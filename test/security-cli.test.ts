import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastLine, runCli, runCliToEnd, type CliProcess } from './helpers/cli';
import { freePort } from './helpers/free-port';
import { random, roundTrip, sha256, startEchoServer } from './helpers/targets';

/**
 * As an operator runs it, as processes: a hub with an MQTT/TLS listener, an X.509 device made with
 * `hub add-device --x509`, its agent on `transport: mqtt_tls`, and `connect`.
 */
describe('X.509 device over MQTT/TLS, as processes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-seccli-'));
  const dataDir = join(dir, 'hub');
  const certDir = join(dir, 'certs');
  let hub: CliProcess;
  let agent: CliProcess | undefined;
  let connect: CliProcess | undefined;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let mqttPort: number;
  let configFile: string;

  beforeAll(async () => {
    echo = await startEchoServer();
    // The MQTT/TLS listener takes a fixed port from the command line: ask the kernel for a free one.
    mqttPort = await freePort();
    hub = runCli(['hub', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--mqtt-listen', `127.0.0.1:${mqttPort}`]);
    await hub.waitForLine(/^hub listening on /);
    await hub.waitForLine(/MQTT over TLS listening/);
  });
  afterAll(async () => {
    await connect?.stop();
    await agent?.stop();
    await hub?.stop();
    await echo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('add-device --x509 issues the certificate; the agent connects with it over MQTT/TLS and serves a stream', async () => {
    const add = await runCliToEnd(['hub', 'add-device', 'pi-cert', '--x509', '--out', certDir, '--data-dir', dataDir]);
    expect(add.code).toBe(0);
    const cs = lastLine(add.stdout);
    expect(cs).toMatch(/^HostName=127\.0\.0\.1:\d+;DeviceId=pi-cert;x509=true$/);
    expect(add.stderr).toContain(join(certDir, 'pi-cert.pem'));
    configFile = join(dir, 'agent.yaml');
    writeFileSync(
      configFile,
      [
        'hub:',
        `  connection_string: "${cs}"`,
        `  ca: ${join(dataDir, 'ca.pem')}`,
        `  cert: ${join(certDir, 'pi-cert.pem')}`,
        `  key: ${join(certDir, 'pi-cert-key.pem')}`,
        '  transport: mqtt_tls',
        `  mqtt_tls_port: ${mqttPort}`,
        'services:',
        '  echo:',
        `    port: ${echo.port}`,
        '',
      ].join('\n'),
    );
    agent = runCli(['agent', '--config', configFile]);
    await agent.waitForLine(/listening for stream requests/); // subscribed, not merely connected
    const svc = await runCliToEnd(['hub', 'service-string', '--data-dir', dataDir]);
    connect = runCli(['connect', 'pi-cert', 'echo', '--listen', '0', '--ca', join(dataDir, 'ca.pem')], { DEVSTREAMS_CONNECTION_STRING: lastLine(svc.stdout) });
    const line = await connect.waitForLine(/^listening on /);
    const port = Number(/:(\d+),/.exec(line)![1]);
    const payload = random(1024 * 1024);
    expect(sha256(await roundTrip(port, payload))).toBe(sha256(payload));
  });

  it('refuses to start, exit 78, when the key is readable by others', async () => {
    const key = join(certDir, 'pi-cert-key.pem');
    chmodSync(key, 0o644);
    try {
      const r = await runCliToEnd(['agent', '--config', configFile]);
      expect(r.code).toBe(78);
      expect(r.stderr).toContain(`${configFile}:5:8: hub.key: ${key} is accessible by group or others (mode 0644); the agent refuses to start: run chmod 600 ${key}`);
    } finally {
      chmodSync(key, 0o600);
    }
  });
});
