import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { CONNECTION_STRING_ENV, parseAgentConfig } from '../agent/config';
import type { StatusSnapshot } from '../agent/status';
import { HubDataDir } from '../hub/data-dir';
import { DeviceRegistry } from '../hub/device-registry';
import { HubClient } from '../service/hub-client';
import { Connect } from '../service/connect';
import { silentLogger } from '../core/log';
import { formatDeviceConnectionString, formatServiceConnectionString, parseServiceConnectionString } from '../wire';
import { runCli, runCliToEnd, startHubProcess, type CliProcess } from './helpers/cli';
import { until } from './helpers/stack';
import { roundTrip, startEchoServer, startFlood } from './helpers/targets';

/** A real hub process, its data dir, and what a test needs to add devices and ask for streams. */
async function hubWorld(dir: string, port = 0): Promise<{ hub: CliProcess & { port: number }; client: HubClient; deviceCs: (id: string) => string }> {
  const hub = await startHubProcess(dir, port);
  const dataDir = new HubDataDir(dir);
  const secrets = dataDir.secrets();
  const host = `127.0.0.1:${hub.port}`;
  const caFile = join(dir, 'ca.pem');
  const client = new HubClient({
    service: parseServiceConnectionString(formatServiceConnectionString({ hostName: host, sharedAccessKeyName: secrets.service_policy_name, sharedAccessKey: secrets.service_policy_key })),
    caPem: readFileSync(caFile),
    caFile,
  });
  const deviceCs = (id: string): string => formatDeviceConnectionString({ hostName: host, deviceId: id, sharedAccessKey: new DeviceRegistry(dataDir).add(id).primary_key });
  return { hub, client, deviceCs };
}

/** Writes an agent config whose secret sits in its own 0600 file, as in production. */
function writeAgentConfig(dir: string, name: string, cs: string, body: string): { file: string; statusFile: string } {
  const secret = join(dir, `${name}.secret`);
  writeFileSync(secret, `${cs}\n`, { mode: 0o600 });
  const statusFile = join(dir, `${name}.status.json`);
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, `hub:\n  connection_string_file: ${secret}\n  ca: ${join(dir, 'ca.pem')}\nstatus_file: ${statusFile}\n${body.includes('telemetry:') ? '' : 'telemetry:\n  interval: off\n'}${body}`);
  return { file, statusFile };
}

function readStatus(file: string): StatusSnapshot | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as StatusSnapshot;
  } catch {
    return undefined;
  }
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

async function openStream(client: HubClient, device: string, service: string): Promise<WebSocket> {
  return client.openStream(await client.requestStream(device, service));
}

function wsClosed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
}

describe('agent config errors (table)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-cfg-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const cs = 'HostName=hub.example:8443;DeviceId=pi;SharedAccessKey=' + Buffer.alloc(32, 1).toString('base64');
  const table: Array<{ name: string; yaml: string; env?: Record<string, string>; expect: Array<[line: number, col: number, message: RegExp]> }> = [
    { name: 'YAML syntax', yaml: 'hub:\n  connection_string: "x\nservices: {}\n', expect: [[4, 1, /^YAML: Missing closing "quote/]] },
    { name: 'unknown top-level key', yaml: `hub:\n  connection_string: "${cs}"\nservice:\n  ssh: {port: 22}\n`, expect: [[3, 1, /^service is not a known setting: did you mean services\?$/]] },
    { name: 'unknown nested key', yaml: `hub:\n  connection_string: "${cs}"\nlimits:\n  max_stream: 3\n`, expect: [[4, 3, /^limits\.max_stream is not a known setting: did you mean limits\.max_streams\?$/]] },
    { name: 'no secret anywhere', yaml: 'hub:\n  stream_hosts: []\n', expect: [[1, 1, /^hub needs connection_string or connection_string_file \(or DEVSTREAMS_DEVICE_CONNECTION_STRING/]] },
    { name: 'both secrets', yaml: `hub:\n  connection_string: "${cs}"\n  connection_string_file: /x\n`, expect: [[3, 27, /^set hub\.connection_string or hub\.connection_string_file, not both$/]] },
    { name: 'unreadable secret file', yaml: `hub:\n  connection_string_file: ${join(dir, 'missing')}\n`, expect: [[2, 27, /^hub\.connection_string_file: cannot read .*missing: ENOENT$/]] },
    { name: 'malformed connection string', yaml: 'hub:\n  connection_string: "HostName=h;DeviceId=d"\n', expect: [[2, 22, /^hub\.connection_string: device connection string has neither SharedAccessKey nor x509=true$/]] },
    { name: 'limit out of range', yaml: `hub:\n  connection_string: "${cs}"\nlimits:\n  max_streams: 0\n  idle_timeout: -1\n`, expect: [[4, 16, /^limits\.max_streams must be at least 1, not 0$/], [5, 17, /^limits\.idle_timeout: "-1" is not a duration/]] },
    { name: 'telemetry interval too short', yaml: `hub:\n  connection_string: "${cs}"\ntelemetry:\n  interval: 5s\n`, expect: [[4, 13, /telemetry\.interval must be off or between 10s and 1d/]] },
    { name: 'metrics on a public address', yaml: `hub:\n  connection_string: "${cs}"\nmetrics_listen: 0.0.0.0:9464\n`, expect: [[3, 17, /metrics_listen must be a loopback host:port/]] },
    { name: 'wrong type', yaml: `hub:\n  connection_string: "${cs}"\nlimits:\n  max_streams: lots\n`, expect: [[4, 16, /^limits\.max_streams must be a number, not "lots"$/]] },
    { name: 'per-service limit on a service', yaml: `hub:\n  connection_string: "${cs}"\nservices:\n  ssh:\n    port: 22\n    idle_timeout: soon\n`, expect: [[6, 19, /services\.ssh\.idle_timeout: "soon" is not a duration/]] },
  ];
  for (const row of table) {
    it(`reports: ${row.name}`, () => {
      const { config, problems } = parseAgentConfig(row.yaml, 'agent.yaml', row.env ?? {});
      expect(config).toBeUndefined();
      expect(problems.map((p) => [p.line, p.col, p.message])).toEqual(row.expect.map(([l, c, re]) => [l, c, expect.stringMatching(re)]));
    });
  }

  it('takes the secret from the environment, which wins over the config', () => {
    const { config, problems } = parseAgentConfig('hub:\n  connection_string_file: /nonexistent\n', 'agent.yaml', { [CONNECTION_STRING_ENV]: cs });
    expect(problems).toEqual([]);
    expect(config?.device.deviceId).toBe('pi');
  });

  it('check-config exits 78 and prints every problem as file:line:col', async () => {
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, `hub:\n  connection_string: "${cs}"\n  bogus: 1\nlimits:\n  max_streams: 0\n`);
    const r = await runCliToEnd(['check-config', file], { [CONNECTION_STRING_ENV]: '' });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`${file}:3:3: hub.bogus is not a known setting`);
    expect(r.stderr).toMatch(new RegExp(`${file}:5:16: limits\\.max_streams must be at least 1`));
  });
});

describe('agent process: signals, sd_notify, hub crash, flood', () => {
  let dir: string;
  let world: Awaited<ReturnType<typeof hubWorld>>;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  const agents: CliProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'devstreams-ops-'));
    world = await hubWorld(dir);
    echo = await startEchoServer();
  });
  afterAll(async () => {
    for (const a of agents) await a.stop('SIGKILL');
    world?.client.close();
    await world?.hub.stop('SIGKILL');
    await echo?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function startAgent(name: string, body: string, env: Record<string, string> = {}): { agent: CliProcess; file: string; statusFile: string } {
    const cfg = writeAgentConfig(dir, name, world.deviceCs(name), body);
    const agent = runCli(['agent', '--config', cfg.file], env);
    agents.push(agent);
    return { agent, ...cfg };
  }

  it('SIGHUP: a good config applies to new streams; a broken one is logged line by line and the old one kept', async () => {
    const { agent, file } = startAgent('hup', `services:\n  echo:\n    port: ${echo.port}\n`);
    await agent.waitForLine(/listening for stream requests/);
    const before = readFileSync(file, 'utf8');
    // Broken: two problems; both are logged with their positions, and echo keeps working.
    writeFileSync(file, `${before}  echo2:\n    port: 70000\nbogus: true\n`);
    agent.proc.kill('SIGHUP');
    await agent.waitForLine(/config reload failed: keeping the running config/);
    expect(agent.stderr.join('\n')).toMatch(/hup\.yaml:\d+:\d+: services\.echo2/);
    expect(agent.stderr.join('\n')).toMatch(/hup\.yaml:\d+:1: bogus is not a known setting/);
    const err = await world.client.requestStream('hup', 'echo2').catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/not in the device's allowlist/);
    const echoPort = await connectPort(world.client, 'hup', 'echo');
    expect((await roundTrip(echoPort.port, Buffer.from('old config'))).toString()).toBe('old config');
    // Good: echo2 appears, echo is gone for new streams.
    writeFileSync(file, before.replace('  echo:\n', '  echo2:\n'));
    agent.proc.kill('SIGHUP');
    await agent.waitForLine(/"msg":"config reloaded"/);
    const echo2 = await connectPort(world.client, 'hup', 'echo2');
    expect((await roundTrip(echo2.port, Buffer.from('new config'))).toString()).toBe('new config');
    const gone = await world.client.requestStream('hup', 'echo').catch((e: unknown) => e);
    expect((gone as Error).message).toMatch(/"echo" is not in the device's allowlist/);
    expect(agent.proc.exitCode).toBeNull();
    echoPort.close();
    echo2.close();
  });

  it('`status` shows the local agent; `devices` lists it at the hub; kill -9 of the agent marks it offline', async () => {
    const { agent, statusFile } = startAgent('seen', `services:\n  echo:\n    port: ${echo.port}\ntelemetry:\n  interval: 10s\n`);
    await agent.waitForLine(/listening for stream requests/);
    await until(() => readStatus(statusFile)?.connection.state === 'connected', 'status file');
    const refused = await world.client.requestStream('seen', 'nope').catch((e: unknown) => e);
    expect((refused as Error).message).toMatch(/not in the device's allowlist/);
    await until(() => (readStatus(statusFile)?.recent_refusals.length ?? 0) > 0, 'the refusal in the status file');
    expect(statSync(statusFile).mode & 0o777).toBe(0o644);
    const status = await runCliToEnd(['status', '--file', statusFile]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/device seen on hub 127\.0\.0\.1:\d+: connected/);
    expect(status.stdout).toMatch(/recent refusals:\n.* nope rid=\S+: service "nope" is not in the device's allowlist/);
    const secrets = new HubDataDir(dir).secrets();
    const env = {
      DEVSTREAMS_CONNECTION_STRING: formatServiceConnectionString({ hostName: `127.0.0.1:${world.hub.port}`, sharedAccessKeyName: secrets.service_policy_name, sharedAccessKey: secrets.service_policy_key }),
    };
    await until(async () => (await world.client.listDevices()).some((d) => d.deviceId === 'seen' && d.health !== null), 'health at the hub');
    const devices = await runCliToEnd(['devices', '--ca', join(dir, 'ca.pem')], env);
    expect(devices.code).toBe(0);
    expect(devices.stdout).toMatch(/^DEVICE\s+ONLINE\s+LAST SEEN\s+CPU\s+TEMP\s+MEM\s+DISK \/\s+STREAMS\s+VERSION$/m);
    expect(devices.stdout).toMatch(/^seen\s+yes\s+\d+s ago\s+\S+\s+\S+\s+\d+%\s+\d+%\s+0\s+\S+$/m);
    // No DISCONNECT, no goodbye: the hub must still learn that the device is gone.
    agent.proc.kill('SIGKILL');
    await agent.exited;
    await until(async () => (await world.client.listDevices()).find((d) => d.deviceId === 'seen')?.connectionState === 'Disconnected', 'the device to show offline');
    const after = await runCliToEnd(['status', '--file', statusFile]);
    expect(after.code).toBe(69);
    expect(after.stdout).toMatch(/NOT RUNNING/);
  });

  it('SIGTERM: after drain_timeout closes open streams with 1001 and exits 0', async () => {
    const { agent } = startAgent('term', `services:\n  echo:\n    port: ${echo.port}\ndrain_timeout: 1s\n`);
    await agent.waitForLine(/listening for stream requests/);
    const ws = await openStream(world.client, 'term', 'echo');
    const closed = wsClosed(ws);
    ws.resume();
    const t0 = Date.now();
    agent.proc.kill('SIGTERM');
    const exit = await agent.exited;
    const elapsed = Date.now() - t0;
    expect(exit).toEqual({ code: 0, signal: null });
    // drain_timeout (1 s), STOP_GRACE_MS (3 s) and the control channel's own bounded close; generous for a busy machine.
    expect(elapsed).toBeLessThan(15_000);
    const c = await closed;
    expect(c.code).toBe(1001);
    expect(c.reason).toMatch(/agent shutting down/);
  });

  it('sd_notify: READY, STATUS, WATCHDOG and STOPPING reach a real datagram socket', async () => {
    const sock = join(dir, 'notify.sock');
    const listener = spawn('python3', [resolve(dir, writeNotifyListener(dir)), sock], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines: string[] = [];
    listener.stdout.on('data', (c: Buffer) => lines.push(...c.toString().split('\n').filter(Boolean)));
    try {
      await until(() => lines.includes('listening'), 'the notify listener');
      const { agent } = startAgent('notify', `services:\n  echo:\n    port: ${echo.port}\n`, { NOTIFY_SOCKET: sock, WATCHDOG_USEC: '1000000' });
      await until(() => lines.includes('READY=1'), 'READY=1');
      await until(() => lines.filter((l) => l === 'WATCHDOG=1').length >= 3, 'three watchdog pings (every 0.5 s)');
      await until(() => lines.some((l) => /^STATUS=connected to 127\.0\.0\.1:\d+; 0 streams open/.test(l)), 'STATUS after connecting');
      agent.proc.kill('SIGTERM');
      expect((await agent.exited).code).toBe(0);
      await until(() => lines.includes('STOPPING=1'), 'STOPPING=1');
    } finally {
      listener.kill();
    }
  });

  it('survives a hub killed with SIGKILL: the open stream is cut promptly, the agent reconnects, new streams work', async () => {
    // Its own hub, so killing it does not disturb the other tests.
    const own = mkdtempSync(join(tmpdir(), 'devstreams-crash-'));
    let crashWorld = await hubWorld(own);
    const port = crashWorld.hub.port;
    const secret = join(own, 'crash.secret');
    writeFileSync(secret, crashWorld.deviceCs('crash'), { mode: 0o600 });
    const statusFile = join(own, 'status.json');
    const file = join(own, 'crash.yaml');
    writeFileSync(file, `hub:\n  connection_string_file: ${secret}\n  ca: ${join(own, 'ca.pem')}\nstatus_file: ${statusFile}\nservices:\n  hold:\n    port: 0\n`);
    // A target that reports when its side of the stream closes.
    const target = await holdTarget();
    writeFileSync(file, readFileSync(file, 'utf8').replace('port: 0', `port: ${target.port}`));
    const agent = runCli(['agent', '--config', file]);
    agents.push(agent);
    try {
      await agent.waitForLine(/listening for stream requests/);
      const ws = await openStream(crashWorld.client, 'crash', 'hold');
      ws.on('error', () => undefined);
      ws.resume();
      await until(() => target.open() === 1, 'the stream to reach its target');
      crashWorld.hub.proc.kill('SIGKILL');
      await crashWorld.hub.exited;
      crashWorld.client.close();
      // The streaming WebSocket died with the hub: the local socket must not linger.
      await until(() => target.open() === 0, 'the local socket to close after the hub died', 10_000);
      await until(() => readStatus(statusFile)?.connection.state === 'disconnected', 'the agent to notice');
      // Same port, same data dir: the agent must find it again by itself.
      crashWorld = await hubWorld(own, port);
      await until(() => {
        const s = readStatus(statusFile);
        return s?.connection.state === 'connected' && s.connection.reconnects >= 1;
      }, 'the agent to reconnect', 90_000);
      await until(() => agent.stderr.filter((l) => l.includes('listening for stream requests')).length >= 2, 'the agent to subscribe again');
      const local = await connectPort(crashWorld.client, 'crash', 'hold');
      const sock = await new Promise<Socket>((r) => {
        const s = netConnect(local.port, '127.0.0.1', () => r(s));
      });
      await until(() => target.open() === 1, 'a new stream after the restart');
      sock.destroy();
      local.close();
      expect(agent.proc.exitCode).toBeNull();
    } finally {
      await agent.stop('SIGTERM');
      crashWorld.client.close();
      await crashWorld.hub.stop('SIGKILL');
      await target.close();
      rmSync(own, { recursive: true, force: true });
    }
  }, 150_000);

  it('keeps its memory bounded while the device side floods a reader that stopped reading', async () => {
    const flood = await startFlood(Infinity, Buffer.alloc(64 * 1024, 0x5a));
    const { agent, statusFile } = startAgent('flood', `services:\n  flood:\n    port: ${flood.port}\n`);
    try {
      await agent.waitForLine(/listening for stream requests/);
      await until(() => readStatus(statusFile)?.connection.state === 'connected', 'status file');
      const pid = agent.proc.pid!;
      const baseline = rssBytes(pid);
      const ws = await openStream(world.client, 'flood', 'flood');
      // Never resumed: the service side reads nothing, so everything upstream must stall.
      let last = -1;
      let still = 0;
      let peak = baseline;
      await until(
        () => {
          peak = Math.max(peak, rssBytes(pid));
          const now = flood.written();
          still = now === last && now > 0 ? still + 1 : 0;
          last = now;
          // Unchanged for 3 s of polls: the flood is held back by backpressure.
          return still >= 150;
        },
        'the flood to stall',
        120_000,
      );
      const offered = flood.written();
      if (process.env.TEST_LOG) process.stderr.write(`flood: offered ${offered} B, agent RSS ${baseline} -> peak ${peak} B\n`);
      expect(readStatus(statusFile)?.streams.active.length).toBe(1);
      // Generous bounds; the exact figures belong in the benchmark. Without backpressure the writer
      // never stalls (the wait above times out) and the agent's memory grows with the bytes.
      expect(offered).toBeLessThan(256 * 1024 * 1024);
      expect(peak - baseline).toBeLessThan(128 * 1024 * 1024);
      ws.terminate();
    } finally {
      await agent.stop('SIGTERM');
      await flood.close();
    }
  }, 180_000);
});

describe('systemd unit', () => {
  const unit = resolve(__dirname, '../config/devstreams-agent.service');
  const haveAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

  it.skipIf(!haveAnalyze)('passes systemd-analyze verify', () => {
    // verify wants ExecStart's binary to exist: point it at this node for the check.
    const dir = mkdtempSync(join(tmpdir(), 'devstreams-unit-'));
    try {
      const copy = join(dir, 'devstreams-agent.service');
      writeFileSync(copy, readFileSync(unit, 'utf8').replace('/usr/local/bin/devstreams', process.execPath));
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', copy], { encoding: 'utf8' });
      expect(r.stderr.trim()).toBe('');
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!haveAnalyze)('has an exposure of 2.0 or lower in systemd-analyze security', () => {
    const out = execFileSync('systemd-analyze', ['security', '--offline=true', unit], { encoding: 'utf8' });
    const m = /Overall exposure level for devstreams-agent\.service: (\d+\.\d+)/.exec(out);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(2.0);
  });

  it.skipIf(!haveAnalyze)('with the shell drop-in still verifies, and its exposure is what the docs say', () => {
    const dir = mkdtempSync(join(tmpdir(), 'devstreams-unit-'));
    try {
      // A drop-in's [Service] lines apply after the unit's, as if appended: check the merged result.
      const merged = `${readFileSync(unit, 'utf8').replace(/\[Install\][^[]*$/, '')}\n${readFileSync(resolve(__dirname, '../config/devstreams-agent-shell.conf'), 'utf8')}`;
      const copy = join(dir, 'devstreams-agent.service');
      writeFileSync(copy, merged.replace('/usr/local/bin/devstreams', process.execPath));
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', copy], { encoding: 'utf8' });
      expect(r.stderr.trim()).toBe('');
      const out = execFileSync('systemd-analyze', ['security', '--offline=true', copy], { encoding: 'utf8' });
      const score = Number(/Overall exposure level for devstreams-agent\.service: (\d+\.\d+)/.exec(out)![1]);
      expect(score).toBeGreaterThan(2.0);
      expect(score).toBeLessThanOrEqual(4.0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is Type=notify with a watchdog, restarts on failure, runs as its own user', () => {
    const text = readFileSync(unit, 'utf8');
    for (const line of ['Type=notify', 'NotifyAccess=all', 'Restart=on-failure', 'User=devstreams', 'StateDirectory=devstreams', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes']) {
      expect(text).toMatch(new RegExp(`^${line.replace('.', '\\.')}$`, 'm'));
    }
    expect(text).toMatch(/^WatchdogSec=\d+s$/m);
  });
});

/** `connect` in-process: a local port whose connections become streams (the hub client does the work). */
async function connectPort(client: HubClient, device: string, service: string): Promise<{ port: number; close: () => void }> {
  const c = new Connect({ client, deviceId: device, service, listen: { host: '127.0.0.1', port: 0 }, log: silentLogger() });
  await c.start();
  return { port: c.address.port, close: () => void c.stop() };
}

/** A target that keeps connections open and counts how many are open. */
async function holdTarget(): Promise<{ port: number; open: () => number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    open: () => sockets.size,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}


/**
 * Node cannot bind an AF_UNIX datagram socket; python3 can. Prints each datagram's lines, and closes
 * any file descriptor passed along (systemd-notify's BARRIER=1 waits for that).
 */
function writeNotifyListener(dir: string): string {
  const file = join(dir, 'notify-listener.py');
  writeFileSync(
    file,
    [
      'import array, os, socket, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
      's.bind(sys.argv[1])',
      'print("listening", flush=True)',
      'while True:',
      '    msg, anc, _flags, _addr = s.recvmsg(4096, socket.CMSG_SPACE(64))',
      '    for level, kind, data in anc:',
      '        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:',
      '            fds = array.array("i")',
      '            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])',
      '            for fd in fds:',
      '                os.close(fd)',
      '    print(msg.decode(), flush=True)',
      '',
    ].join('\n'),
  );
  chmodSync(file, 0o755);
  return file;
}

describe('config/agent.example.yaml', () => {
  const file = resolve(__dirname, '../config/agent.example.yaml');
  const text = readFileSync(file, 'utf8');

  it('is a valid config', () => {
    // The secret comes from the environment here: the credential file exists only under systemd.
    const { config, problems } = parseAgentConfig(text, file, { [CONNECTION_STRING_ENV]: 'HostName=hub.example;DeviceId=pi;SharedAccessKey=' + Buffer.alloc(32, 7).toString('base64') });
    expect(problems).toEqual([]);
    expect(config?.services.ssh).toMatchObject({ port: 22, max_streams: 4 });
  });

  it('mentions every setting of the schema (set or commented out)', async () => {
    const { agentConfigSchema } = await import('../agent/config');
    const keysOf = (schema: unknown): string[] => Object.keys((schema as { shape: Record<string, unknown> }).shape);
    const unwrap = (s: unknown): unknown => {
      let cur = s as { def?: { innerType?: unknown }; unwrap?: () => unknown; shape?: unknown };
      while (cur && !cur.shape && cur.def?.innerType) cur = cur.def.innerType as typeof cur;
      return cur;
    };
    const shape = (agentConfigSchema as unknown as { shape: Record<string, unknown> }).shape;
    const missing: string[] = [];
    for (const key of Object.keys(shape)) {
      if (!new RegExp(`^#? ?${key}:`, 'm').test(text)) missing.push(key);
      const inner = unwrap(shape[key]) as { shape?: unknown } | undefined;
      if (inner?.shape) for (const sub of keysOf(inner)) if (!new RegExp(`^\\s*#?\\s*${sub}:`, 'm').test(text)) missing.push(`${key}.${sub}`);
    }
    expect(missing).toEqual([]);
  });
});

describe('logs under journald', () => {
  /** Runs the agent (against a hub that is not there) with stderr going to a file; returns its lines. */
  async function agentLines(journalStream: (fileStat: { dev: number; ino: number }) => string): Promise<string[]> {
    const dir = mkdtempSync(join(tmpdir(), 'devstreams-journal-'));
    try {
      const cfg = join(dir, 'agent.yaml');
      writeFileSync(cfg, `hub:\n  connection_string: "HostName=127.0.0.1:1;DeviceId=j;SharedAccessKey=${Buffer.alloc(32, 3).toString('base64')}"\ntelemetry:\n  interval: off\n`);
      const logFile = join(dir, 'stderr.log');
      const fd = openSync(logFile, 'w');
      const st = fstatSync(fd);
      const env: Record<string, string | undefined> = { ...process.env, JOURNAL_STREAM: journalStream({ dev: st.dev, ino: st.ino }) };
      delete env.DEVSTREAMS_LOG_FORMAT;
      const child = spawn(process.execPath, [resolve(__dirname, '../dist/devstreams.cjs'), 'agent', '--config', cfg], { env, stdio: ['ignore', 'ignore', fd] });
      closeSync(fd);
      const exited = new Promise((r) => child.on('exit', r));
      const lines = (): string[] => readFileSync(logFile, 'utf8').split('\n').filter(Boolean);
      await until(() => lines().some((l) => l.includes('"level":40')), 'a warning (the hub is unreachable)');
      child.kill('SIGTERM');
      await exited;
      return lines();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('prefixes each JSON line with its syslog priority when stderr is the journal (JOURNAL_STREAM)', async () => {
    const lines = await agentLines(({ dev, ino }) => `${dev}:${ino}`);
    expect(lines.find((l) => l.includes('"msg":"agent started"'))).toMatch(/^<6>\{"level":30,/);
    expect(lines.find((l) => l.includes('"level":40'))).toMatch(/^<4>\{/);
    for (const l of lines) expect(JSON.parse(l.replace(/^<\d>/, ''))).toHaveProperty('level');
  });

  it('writes plain JSON when JOURNAL_STREAM names another stream', async () => {
    const lines = await agentLines(({ dev, ino }) => `${dev}:${ino + 1}`);
    for (const l of lines) expect(l.startsWith('{')).toBe(true);
  });
});
