import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, startHubProcess } from './helpers/cli';
import { openEchoConnection, startProcessWorld, type ProcessWorld } from './helpers/process-world';
import { random, sha256 } from './helpers/targets';

/**
 * Graceful stops (SIGTERM) of the hub and the agent, as processes: streams that end within the drain
 * deadline end cleanly; what is still open then reaches the client as a reset, never as a FIN that
 * would read as a finished transfer.
 */
describe('graceful stop: drain, then reset', () => {
  let world: ProcessWorld | undefined;
  afterEach(async () => {
    await world?.stop();
    world = undefined;
  });

  it('hub SIGTERM during a transfer: the client sees a reset after the drain deadline, connect a warning', async () => {
    world = await startProcessWorld({ hubArgs: ['--drain', '1s'] });
    const c = await openEchoConnection(world.connectPort, random(256 * 1024));
    world.hub.proc.kill('SIGTERM');
    await world.hub.waitForLine(/draining: 1 streams open/);
    const end = await c.ended;
    expect(end.how).toBe('reset');
    expect(await world.hub.exited).toEqual({ code: 0, signal: null });
    const warn = JSON.parse(await world.connect.waitForLine(/stream reset: hub shutting down \(1001\)/));
    expect(warn.level).toBe(40);
    expect(warn.bytes_out).toBe(256 * 1024);
    expect(world.hub.stderr.join('\n')).toMatch(/resetting 1 open streams: hub shutting down/);
  }, 60_000);

  it('hub SIGTERM: a transfer that ends within the drain deadline ends cleanly; new streams are refused meanwhile', async () => {
    world = await startProcessWorld({ hubArgs: ['--drain', '30s'] });
    const first = random(256 * 1024);
    const c = await openEchoConnection(world.connectPort, first);
    const t0 = Date.now();
    world.hub.proc.kill('SIGTERM');
    await world.hub.waitForLine(/draining: 1 streams open/);
    // A new stream while draining: refused with a reason, the client reset.
    const late = await openEchoConnection(world.connectPort, Buffer.from('x')).then(
      () => 'opened',
      (err: Error) => err.message,
    );
    expect(late).toMatch(/reset|ECONNRESET/);
    // Refused at the door (listener closed; a kept-alive connection closed under the request) or by the API (503).
    await world.connect.waitForLine(/stream to pi-world\/echo failed: .*(connection refused|ECONNRESET|hub is shutting down)/);
    // The open one finishes: the rest of the upload, then our end; the echo comes back whole, then a FIN.
    const rest = random(1024 * 1024);
    c.socket.end(rest);
    const end = await c.ended;
    expect(end.how).toBe('fin');
    expect(sha256(c.data())).toBe(sha256(Buffer.concat([first, rest])));
    expect(await world.hub.exited).toEqual({ code: 0, signal: null });
    // It exited once the stream was done, not at the deadline.
    expect(Date.now() - t0).toBeLessThan(25_000);
    expect(world.hub.stderr.join('\n')).toMatch(/drained: no streams open/);
  }, 60_000);

  it('agent SIGTERM during a transfer: the client sees a reset after drain_timeout', async () => {
    world = await startProcessWorld({ agentYaml: 'drain_timeout: 1s\n' });
    const c = await openEchoConnection(world.connectPort, random(256 * 1024));
    world.agent.proc.kill('SIGTERM');
    await world.agent.waitForLine(/draining: 1 streams open/);
    expect((await c.ended).how).toBe('reset');
    expect(await world.agent.exited).toEqual({ code: 0, signal: null });
    await world.agent.waitForLine(/drain deadline passed: resetting 1 open streams/);
    const warn = JSON.parse(await world.connect.waitForLine(/stream reset: agent shutting down \(1001\)/));
    expect(warn.level).toBe(40);
  }, 60_000);

  it('agent SIGTERM: a transfer that ends within drain_timeout ends cleanly, byte-exact', async () => {
    world = await startProcessWorld({ agentYaml: 'drain_timeout: 30s\n' });
    const first = random(256 * 1024);
    const c = await openEchoConnection(world.connectPort, first);
    world.agent.proc.kill('SIGTERM');
    await world.agent.waitForLine(/draining: 1 streams open/);
    const rest = random(1024 * 1024);
    c.socket.end(rest);
    expect((await c.ended).how).toBe('fin');
    expect(sha256(c.data())).toBe(sha256(Buffer.concat([first, rest])));
    expect(await world.agent.exited).toEqual({ code: 0, signal: null });
    expect(world.agent.stderr.join('\n')).not.toMatch(/drain deadline passed/);
  }, 60_000);
});

describe('a process that cannot do its job exits', () => {
  let taken: Server | undefined;
  afterEach(() => taken?.close());

  it('a hub whose port is taken exits 69 within 2 s with one line naming the cause', async () => {
    taken = createServer();
    await new Promise<void>((r) => taken!.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    const dataDir = join(mkdtempSync(join(tmpdir(), 'devstreams-taken-')), 'hub');
    // A data directory made beforehand, so the clock measures the start, not making keys.
    const first = await startHubProcess(dataDir);
    expect(await first.stop()).toEqual({ code: 0, signal: null });
    // What starting the bundle costs on this machine right now (a busy CI box: a second or more).
    const v0 = Date.now();
    await runCli(['--version']).exited;
    const startupMs = Date.now() - v0;
    const t0 = Date.now();
    const hub = runCli(['hub', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`]);
    const exit = await hub.exited;
    expect(exit).toEqual({ code: 69, signal: null });
    // Within 2 s of being up (it used to run forever on its broker).
    expect(Date.now() - t0).toBeLessThan(2_000 + startupMs);
    const plain = hub.stderr.filter((l) => !l.startsWith('{'));
    expect(plain).toEqual([expect.stringMatching(/^devstreams: cannot listen: .*EADDRINUSE.*127\.0\.0\.1:\d+$/)]);
  }, 60_000);

  it('connect on a taken port exits 69 at once; an agent whose metrics port is taken keeps serving streams and says why', async () => {
    taken = createServer();
    await new Promise<void>((r) => taken!.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    const world = await startProcessWorld();
    try {
      const connect = runCli(['connect', 'pi-world', 'echo', '--listen', `127.0.0.1:${port}`, '--ca', join(world.dataDir, 'ca.pem')], { DEVSTREAMS_CONNECTION_STRING: world.serviceString });
      expect((await connect.exited).code).toBe(69);
      expect(connect.stderr.filter((l) => !l.startsWith('{'))).toEqual([expect.stringMatching(/^devstreams: cannot listen: .*EADDRINUSE/)]);
      // Decision: metrics are not the agent's job; remote access to the device is. It stays up.
      await world.agent.stop();
      const config = join(world.dir, 'agent.yaml');
      writeFileSync(config, readFileSync(config, 'utf8') + `metrics_listen: 127.0.0.1:${port}\n`);
      const agent = runCli(['agent', '--config', config]);
      try {
        await agent.waitForLine(/"level":50.*"err":"EADDRINUSE".*metrics endpoint could not listen/);
        await agent.waitForLine(/listening for stream requests/);
        const c = await openEchoConnection(world.connectPort, Buffer.from('still serving'));
        expect(c.data().toString()).toBe('still serving');
        c.socket.destroy();
      } finally {
        await agent.stop();
      }
    } finally {
      await world.stop();
    }
  }, 60_000);
});
