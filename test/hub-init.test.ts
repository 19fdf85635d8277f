import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { addDevice, lastLine, runCliToEnd, startAgentProcess, startConnectProcess, startHubProcess, tcpServicesYaml, type CliProcess } from './helpers/cli';
import { freePort } from './helpers/free-port';
import { roundTrip, startEchoServer } from './helpers/targets';

/**
 * `hub init` prepares a hub before its first start: devices and the CA can be handed out first, and
 * the hub that then starts on the same directory and port accepts exactly those strings.
 */
describe('hub init', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-init-'));
  const running: CliProcess[] = [];
  let echo: Awaited<ReturnType<typeof startEchoServer>> | undefined;

  afterAll(async () => {
    for (const p of running.reverse()) await p.stop();
    await echo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a port chosen at start (connection strings name it): exit 64, nothing made', async () => {
    const dataDir = join(dir, 'port0');
    const r = await runCliToEnd(['hub', 'init', '--data-dir', dataDir, '--listen', '127.0.0.1:0']);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/fixed port/);
    expect(() => readFileSync(join(dataDir, 'hub.json'))).toThrow();
  });

  it('makes a directory whose strings, issued before the first start, work once the hub runs', async () => {
    const dataDir = join(dir, 'hub');
    const port = await freePort();
    const init = await runCliToEnd(['hub', 'init', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`]);
    expect(init.code, init.stderr).toBe(0);
    const serviceString = lastLine(init.stdout);
    expect(serviceString).toBe(`HostName=127.0.0.1:${port};SharedAccessKeyName=service;SharedAccessKey=${JSON.parse(readFileSync(join(dataDir, 'secrets.json'), 'utf8')).service_policy_key}`);
    expect(init.stderr).toContain(join(dataDir, 'ca.pem'));
    const caBefore = readFileSync(join(dataDir, 'ca.pem'), 'utf8');

    // Run again: completed, never replaced.
    const again = await runCliToEnd(['hub', 'init', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`]);
    expect(again.code).toBe(0);
    expect(lastLine(again.stdout)).toBe(serviceString);
    expect(readFileSync(join(dataDir, 'ca.pem'), 'utf8')).toBe(caBefore);

    const deviceString = await addDevice(dataDir, 'pi-init');
    expect(deviceString).toMatch(new RegExp(`^HostName=127\\.0\\.0\\.1:${port};DeviceId=pi-init;`));

    echo = await startEchoServer();
    const hub = await startHubProcess(dataDir, port);
    running.push(hub);
    expect(readFileSync(join(dataDir, 'ca.pem'), 'utf8')).toBe(caBefore);
    const agent = startAgentProcess({ config: join(dir, 'agent.yaml'), dataDir, deviceString, servicesYaml: tcpServicesYaml({ echo: echo.port }) });
    running.push(agent);
    await agent.waitForLine(/listening for stream requests/, 30_000);
    const connect = await startConnectProcess({ dataDir, serviceString, device: 'pi-init', service: 'echo' });
    running.push(connect);
    const payload = Buffer.from('made before the first start');
    expect((await roundTrip(connect.port, payload)).equals(payload)).toBe(true);
  }, 90_000);
});
