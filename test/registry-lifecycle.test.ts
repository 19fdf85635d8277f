import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addDevice, lastLine, runCliToEnd, serviceConnectionString, startAgentProcess, startConnectProcess, startHubProcess, tcpServicesYaml, type CliProcess } from './helpers/cli';
import { roundTrip, sendAndHalfClose, startEchoServer } from './helpers/targets';

/** Replaces a file the way an editor saves it (a new file renamed over), so a reader sees one version. */
function replaceFile(path: string, text: string): void {
  writeFileSync(`${path}.edit`, text);
  renameSync(`${path}.edit`, path);
}

/**
 * Device lifecycle and the registry file on a running hub, as processes: remove, disable and enable
 * take effect at once; ids that mean something to JavaScript are refused; a devices.json broken by
 * hand under the running hub leaves it serving with the last good registry, and the tools refuse to
 * write over it without --force.
 */
describe('device lifecycle and a broken devices.json on a running hub', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-lifecycle-'));
  const dataDir = join(dir, 'hub');
  const devicesFile = join(dataDir, 'devices.json');
  const ca = join(dataDir, 'ca.pem');
  let hub: CliProcess & { port: number };
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let serviceString: string;
  const deviceStrings: Record<string, string> = {};
  const running: CliProcess[] = [];

  function startAgent(id: string): CliProcess {
    const agent = startAgentProcess({ config: join(dir, `${id}.yaml`), dataDir, deviceString: deviceStrings[id]!, servicesYaml: tcpServicesYaml({ echo: echo.port }) });
    running.push(agent);
    return agent;
  }

  async function startConnect(device: string): Promise<CliProcess & { port: number }> {
    const proc = await startConnectProcess({ dataDir, serviceString, device, service: 'echo' });
    running.push(proc);
    return proc;
  }

  beforeAll(async () => {
    echo = await startEchoServer();
    hub = await startHubProcess(dataDir);
    serviceString = await serviceConnectionString(dataDir);
    for (const id of ['pi-a', 'pi-b']) deviceStrings[id] = await addDevice(dataDir, id);
  }, 60_000);

  afterAll(async () => {
    for (const p of running) await p.stop();
    await hub?.stop();
    await echo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses device ids that mean something to JavaScript objects, exit 64 and nothing on stdout', async () => {
    for (const id of ['__proto__', 'constructor', 'hasOwnProperty', '..']) {
      const r = await runCliToEnd(['hub', 'add-device', id, '--data-dir', dataDir]);
      expect(r.code, id).toBe(64);
      expect(r.stdout, id).toBe('');
      expect(r.stderr, id).toMatch(/reserved/);
    }
    expect(Object.keys(JSON.parse(readFileSync(devicesFile, 'utf8')).devices)).toEqual(['pi-a', 'pi-b']);
  });

  it('disable and enable take effect on the running hub at once', async () => {
    const agent = startAgent('pi-a');
    await agent.waitForLine(/listening for stream requests/, 30_000);
    const c = await startConnect('pi-a');
    expect((await roundTrip(c.port, Buffer.from('on'))).toString()).toBe('on');

    const off = await runCliToEnd(['hub', 'disable-device', 'pi-a', '--data-dir', dataDir]);
    expect(off.code, off.stderr).toBe(0);
    // No new stream, whether or not its session is still up...
    await sendAndHalfClose(c.port, Buffer.from('x'));
    await c.waitForLine(/pi-a.* is disabled/, 30_000);
    // The operator's list says so (IoT Hub's `status`), not merely offline.
    const listed = await runCliToEnd(['devices', '--ca', ca], { DEVSTREAMS_CONNECTION_STRING: serviceString });
    expect(listed.stdout).toMatch(/^pi-a\s+disabled\s/m);
    expect(listed.stdout).toMatch(/^pi-b\s+(yes|no)\s/m);
    // ...and its next connect is refused.
    await hub.waitForLine(/"device":"pi-a".*"why":"device is disabled/, 60_000);
    await agent.stop();

    const on = await runCliToEnd(['hub', 'enable-device', 'pi-a', '--data-dir', dataDir]);
    expect(on.code, on.stderr).toBe(0);
    const again = startAgent('pi-a');
    await again.waitForLine(/listening for stream requests/, 30_000);
    expect((await roundTrip(c.port, Buffer.from('back'))).toString()).toBe('back');
    expect((await runCliToEnd(['devices', '--ca', ca], { DEVSTREAMS_CONNECTION_STRING: serviceString })).stdout).toMatch(/^pi-a\s+yes\s/m);
    await again.stop();
  });

  it('remove takes effect on the running hub at once', async () => {
    const r = await runCliToEnd(['hub', 'remove-device', 'pi-a', '--data-dir', dataDir]);
    expect(r.code, r.stderr).toBe(0);
    const c = await runCliToEnd(['connect', 'pi-a', 'echo', '--listen', '0', '--ca', ca], { DEVSTREAMS_CONNECTION_STRING: serviceString });
    expect(c.code).not.toBe(0);
    expect(c.stderr).toMatch(/unknown device "pi-a"/);
    const agent = startAgent('pi-a');
    await hub.waitForLine(/"device":"pi-a".*"why":"unknown device"/, 30_000);
    await agent.stop();
    const twice = await runCliToEnd(['hub', 'remove-device', 'pi-a', '--data-dir', dataDir]);
    expect(twice.code).toBe(64);
    expect(twice.stderr).toMatch(/not registered/);
  });

  it('a truncated devices.json: the hub keeps serving with the last good registry and says where, once; the tools need --force', async () => {
    const agent = startAgent('pi-b');
    await agent.waitForLine(/listening for stream requests/, 30_000);
    const c = await startConnect('pi-b');
    expect((await roundTrip(c.port, Buffer.from('before'))).toString()).toBe('before');

    const good = readFileSync(devicesFile, 'utf8');
    const truncated = good.slice(0, Math.floor(good.length / 2));
    const lines = truncated.split('\n');
    const where = `${devicesFile}:${lines.length}:${lines.at(-1)!.length + 1}: `;
    replaceFile(devicesFile, truncated);
    const error = JSON.parse(await hub.waitForLine(/keeping the last good devices\.json/, 30_000));
    expect(error.msg.startsWith(where)).toBe(true);
    expect(error.level).toBe(50);

    // Still serving: streams, the device list, and a device (re)connecting with its key.
    expect((await roundTrip(c.port, Buffer.from('during'))).toString()).toBe('during');
    const devices = await runCliToEnd(['devices', '--ca', ca], { DEVSTREAMS_CONNECTION_STRING: serviceString });
    expect(devices.code, devices.stderr).toBe(0);
    expect(devices.stdout).toMatch(/^pi-b /m);
    await agent.stop();
    const reconnected = startAgent('pi-b');
    await reconnected.waitForLine(/listening for stream requests/, 30_000);
    expect((await roundTrip(c.port, Buffer.from('after reconnect'))).toString()).toBe('after reconnect');
    expect(hub.proc.exitCode).toBeNull();
    expect(hub.stderr.filter((l) => l.includes('keeping the last good devices.json'))).toHaveLength(1);

    // The tools refuse to write over it, naming the place; --force sets it aside and starts anew.
    const refused = await runCliToEnd(['hub', 'add-device', 'pi-c', '--data-dir', dataDir]);
    expect(refused.code).toBe(78);
    expect(refused.stderr).toContain(where);
    expect(refused.stderr).toMatch(/--force/);
    expect(readFileSync(devicesFile, 'utf8')).toBe(truncated);
    const forced = await runCliToEnd(['hub', 'add-device', 'pi-c', '--data-dir', dataDir, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(lastLine(forced.stdout)).toMatch(/;DeviceId=pi-c;SharedAccessKey=/);
    expect(readdirSync(dataDir).filter((f) => f.startsWith('devices.json.broken-'))).toHaveLength(1);
    expect(readdirSync(dataDir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    await hub.waitForLine(/devices\.json is good again/, 30_000);
    await hub.waitForLine(/"device":"pi-c","change":"added"/, 30_000);
  });

  it('a hub does not start on a broken devices.json: exit 78 and file:line:col', async () => {
    const other = join(dir, 'other-hub');
    const first = await startHubProcess(other);
    await first.stop();
    replaceFile(join(other, 'devices.json'), '{\n  "devices": {\n    "pi-1": { "primary_key": "a", }\n  }\n}\n');
    const r = await runCliToEnd(['hub', '--data-dir', other, '--listen', '127.0.0.1:0']);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`${join(other, 'devices.json')}:3:35: Expected double-quoted property name`);
  });
});
