import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addDevice, lastLine, runCliToEnd, serviceConnectionString, startAgentProcess, startConnectProcess, startHubProcess, tcpServicesYaml, type CliProcess } from './helpers/cli';
import { roundTrip, sendAndHalfClose, startEchoServer } from './helpers/targets';

/** A TCP connection through `connect` that stays open: write, read the echo, write again later. */
async function openEcho(port: number): Promise<{ socket: Socket; echo: (text: string) => Promise<string> }> {
  const socket = netConnect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let got = '';
  socket.on('data', (d: Buffer) => (got += d.toString()));
  const echo = (text: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const start = got.length;
      const timer = setTimeout(() => reject(new Error(`no echo of "${text}" (got "${got.slice(start)}")`)), 30_000);
      const check = (): void => {
        if (got.length - start >= text.length) {
          clearTimeout(timer);
          socket.off('data', check);
          resolve(got.slice(start, start + text.length));
        }
      };
      socket.on('data', check);
      socket.write(text);
    });
  return { socket, echo };
}

/**
 * Operators as people run them, as processes: a hub, two operators with their own keys (one limited
 * to some devices and services), one removed while its stream is open, and the audit lines on the hub
 * and on the device naming who did what.
 */
describe('operators, as processes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-operators-'));
  const dataDir = join(dir, 'hub');
  const ca = join(dataDir, 'ca.pem');
  let hub: CliProcess & { port: number };
  let agent: CliProcess;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let legacyString: string;
  const strings: Record<string, string> = {};
  const running: CliProcess[] = [];

  async function startConnect(as: string, device = 'pi-1', service = 'echo'): Promise<CliProcess & { port: number }> {
    const proc = await startConnectProcess({ dataDir, serviceString: as, device, service });
    running.push(proc);
    return proc;
  }

  beforeAll(async () => {
    echo = await startEchoServer();
    hub = await startHubProcess(dataDir);
    // The string every hub starts with, taken before operators.json exists.
    legacyString = await serviceConnectionString(dataDir);
    const deviceString = await addDevice(dataDir, 'pi-1');
    await addDevice(dataDir, 'lab-1');
    agent = startAgentProcess({ config: join(dir, 'agent.yaml'), dataDir, deviceString, servicesYaml: tcpServicesYaml({ echo: echo.port, other: echo.port }) });
    await agent.waitForLine(/listening for stream requests/, 30_000);
    for (const [name, extra] of [
      ['alice', []],
      ['bob', ['--devices', 'pi-*', '--services', 'echo']],
    ] as const) {
      const r = await runCliToEnd(['hub', 'add-operator', name, '--data-dir', dataDir, ...extra]);
      expect(r.code, r.stderr).toBe(0);
      strings[name] = lastLine(r.stdout);
      expect(strings[name]).toMatch(new RegExp(`^HostName=127\\.0\\.0\\.1:${hub.port};SharedAccessKeyName=${name};SharedAccessKey=[A-Za-z0-9+/=]{44}$`));
      expect(r.stderr).toMatch(/shown only now/);
    }
  }, 120_000);

  afterAll(async () => {
    for (const p of running) await p.stop();
    await agent?.stop();
    await hub?.stop();
    await echo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('each operator has its own key; the service string made before operators existed still works as "service"', async () => {
    expect(strings.alice).not.toBe(strings.bob);
    const list = await runCliToEnd(['hub', 'operators', '--data-dir', dataDir]);
    expect(list.stdout.split('\n').map((l) => l.split('\t').slice(0, 2).join(' '))).toEqual([
      'alice devices all, services all',
      'bob devices pi-*, services echo',
      'service devices all, services all',
    ]);
    expect(list.stdout).not.toMatch(/[A-Za-z0-9+/]{43}=/);
    const legacy = await startConnect(legacyString);
    expect((await roundTrip(legacy.port, Buffer.from('legacy'))).toString()).toBe('legacy');
    const rec = await hub.waitForLine(/"audit":"stream".*"operator":"service".*"outcome":"closed"/, 30_000);
    expect(JSON.parse(rec)).toMatchObject({ operator: 'service', device: 'pi-1', service: 'echo', remote: '127.0.0.1', bytes_service_to_device: 6, bytes_device_to_service: 6 });
  });

  it('an operator limited to devices and services sees and reaches only those', async () => {
    const devices = await runCliToEnd(['devices', '--ca', ca], { DEVSTREAMS_CONNECTION_STRING: strings.bob! });
    expect(devices.code, devices.stderr).toBe(0);
    expect(devices.stdout).toMatch(/^pi-1 /m);
    expect(devices.stdout).not.toMatch(/lab-1/);
    const all = await runCliToEnd(['devices', '--ca', ca], { DEVSTREAMS_CONNECTION_STRING: strings.alice! });
    expect(all.stdout).toMatch(/^lab-1 /m);

    const ok = await startConnect(strings.bob!);
    expect((await roundTrip(ok.port, Buffer.from('bob'))).toString()).toBe('bob');
    const wrongService = await startConnect(strings.bob!, 'pi-1', 'other');
    await sendAndHalfClose(wrongService.port, Buffer.from('x'));
    await wrongService.waitForLine(/operator .*bob.* may not use service .*other/, 30_000);
    const denied = JSON.parse(await hub.waitForLine(/"audit":"stream".*"operator":"bob".*"service":"other"/, 30_000));
    expect(denied).toMatchObject({ outcome: 'denied', device: 'pi-1', reason: 'operator "bob" may not use service "other"' });
  });

  it('removing an operator refuses its next request while the stream it opened finishes; both audit lines name it', async () => {
    const c = await startConnect(strings.alice!);
    const open = await openEcho(c.port);
    expect(await open.echo('before removal ')).toBe('before removal ');

    const removed = await runCliToEnd(['hub', 'remove-operator', 'alice', '--data-dir', dataDir]);
    expect(removed.code, removed.stderr).toBe(0);

    // The next request is refused at once (the hub re-reads operators.json on every check)...
    const devices = await runCliToEnd(['devices', '--ca', ca], { DEVSTREAMS_CONNECTION_STRING: strings.alice! });
    expect(devices.code).not.toBe(0);
    expect(devices.stderr).toMatch(/unknown shared access policy "alice"/);
    // A connection that is refused: connect may reset it before this side saw it open (a busy machine).
    const second = netConnect(c.port, '127.0.0.1').on('error', () => undefined);
    await c.waitForLine(/unknown shared access policy .*alice/, 30_000);
    second.destroy();

    // ...while the stream alice opened before keeps working until it ends.
    expect(await open.echo('after removal')).toBe('after removal');
    open.socket.end();
    const hubLine = await hub.waitForLine(/"audit":"stream".*"operator":"alice".*"outcome":"closed"/, 30_000);
    expect(JSON.parse(hubLine)).toMatchObject({
      operator: 'alice',
      remote: '127.0.0.1',
      device: 'pi-1',
      service: 'echo',
      outcome: 'closed',
      bytes_service_to_device: 28,
      bytes_device_to_service: 28,
    });
    expect(typeof JSON.parse(hubLine).duration_ms).toBe('number');
    expect(typeof JSON.parse(hubLine).reason).toBe('string');
    const agentLine = await agent.waitForLine(/"audit":"stream".*"operator":"alice".*"outcome":"closed"/, 30_000);
    expect(JSON.parse(agentLine)).toMatchObject({ operator: 'alice', service: 'echo', bytes_to_target: 28, bytes_from_target: 28 });
    // Keys never reach a log.
    expect(hub.stderr.join('\n')).not.toContain(/SharedAccessKey=([^;\s]+)/.exec(strings.bob!)![1]);
  });

  it('rotating an operator refuses the old key at once and prints a working new one', async () => {
    const r = await runCliToEnd(['hub', 'rotate-operator', 'bob', '--data-dir', dataDir]);
    expect(r.code, r.stderr).toBe(0);
    const fresh = lastLine(r.stdout);
    expect(fresh).not.toBe(strings.bob);
    const old = await runCliToEnd(['devices', '--ca', ca], { DEVSTREAMS_CONNECTION_STRING: strings.bob! });
    expect(old.code).not.toBe(0);
    expect(old.stderr).toMatch(/refused the service credentials/);
    const now = await runCliToEnd(['devices', '--ca', ca], { DEVSTREAMS_CONNECTION_STRING: fresh });
    expect(now.code, now.stderr).toBe(0);
    expect(now.stdout).toMatch(/^pi-1 /m);
  });

  it('a broken operators.json leaves the hub checking operators against the last good one, logged once', async () => {
    const file = join(dataDir, 'operators.json');
    const good = readFileSync(file, 'utf8');
    writeFileSync(`${file}.edit`, good.replace(/"key"/, '"key" "'));
    renameSync(`${file}.edit`, file);
    const error = JSON.parse(await hub.waitForLine(/keeping the last good operators\.json/, 30_000));
    expect(error.msg).toMatch(new RegExp(`^${file.replace(/[.]/g, '\\.')}:\\d+:\\d+: `));
    const legacy = await runCliToEnd(['devices', '--ca', ca], { DEVSTREAMS_CONNECTION_STRING: legacyString });
    expect(legacy.code, legacy.stderr).toBe(0);
    const alice = await runCliToEnd(['devices', '--ca', ca], { DEVSTREAMS_CONNECTION_STRING: strings.alice! });
    expect(alice.code).not.toBe(0);
    expect(hub.stderr.filter((l) => l.includes('keeping the last good operators.json'))).toHaveLength(1);
    const refused = await runCliToEnd(['hub', 'add-operator', 'carol', '--data-dir', dataDir]);
    expect(refused.code).toBe(78);
    expect(refused.stderr).toMatch(/operators\.json:\d+:\d+: .*--force/);
    // service-string names the place too, never falling back to secrets.json's key.
    const service = await runCliToEnd(['hub', 'service-string', '--data-dir', dataDir]);
    expect(service.code).toBe(78);
    expect(service.stdout).toBe('');
    expect(service.stderr).toMatch(/operators\.json:\d+:\d+: /);
    writeFileSync(`${file}.edit`, good);
    renameSync(`${file}.edit`, file);
    await hub.waitForLine(/operators\.json is good again/, 30_000);
  });

  it('refuses operator names that are not names, and names that exist', async () => {
    for (const bad of ['__proto__', 'constructor', 'a b', 'x;SharedAccessKey=y', 'a'.repeat(65)]) {
      const r = await runCliToEnd(['hub', 'add-operator', bad, '--data-dir', dataDir]);
      expect(r.code, bad).toBe(64);
      expect(r.stdout, bad).toBe('');
    }
    const again = await runCliToEnd(['hub', 'add-operator', 'bob', '--data-dir', dataDir]);
    expect(again.code).toBe(64);
    expect(again.stderr).toMatch(/exists already/);
    const badLimit = await runCliToEnd(['hub', 'add-operator', 'carol', '--devices', 'pi/#', '--data-dir', dataDir]);
    expect(badLimit.code).toBe(64);
  });
});
