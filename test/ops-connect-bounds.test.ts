import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_SETUPS, MAX_SETUPS_WAITING, SETUP_WAIT_MS } from '../service/connect';
import { BUNDLE } from './helpers/cli';
import { startProcessWorld, type ProcessWorld } from './helpers/process-world';

const SETUP_TIMEOUT_MS = 3_000;
const CONNECTIONS = 200;

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Opens a connection and reports how and when it ended (connect never opens a stream here). */
function attempt(port: number): Promise<{ how: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    s.on('error', (err: NodeJS.ErrnoException) => resolve({ how: err.code ?? 'error', ms: Date.now() - t0 }));
    s.on('end', () => resolve({ how: 'fin', ms: Date.now() - t0 }));
    s.on('close', () => resolve({ how: 'closed', ms: Date.now() - t0 }));
    s.resume();
  });
}

/**
 * `connect` against a hub that accepts TCP but never answers (SIGSTOP): it must not hold every
 * connection it accepts. A few are set up at once, a few more wait briefly, the rest are reset at
 * once; every one is answered within the setup deadline, and descriptors stay bounded.
 */
describe('connect is bounded against a frozen hub', () => {
  let world: ProcessWorld;
  beforeAll(async () => {
    world = await startProcessWorld({ connectArgs: ['--setup-timeout', `${SETUP_TIMEOUT_MS}ms`] });
  }, 60_000);
  afterAll(async () => {
    world?.hub.proc.kill('SIGCONT');
    await world?.stop();
  });

  it(`${CONNECTIONS} connections: bounded descriptors, all answered within the deadline, the cause named`, async () => {
    const pid = world.connect.proc.pid!;
    const baseline = openFds(pid);
    world.hub.proc.kill('SIGSTOP');
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, openFds(pid))), 25);
    const results = await Promise.all(Array.from({ length: CONNECTIONS }, () => attempt(world.connectPort)));
    clearInterval(sampler);
    const slowest = Math.max(...results.map((r) => r.ms));
    console.log(`200 connections to connect, hub frozen: descriptors ${baseline} -> peak ${peak}; slowest answer ${slowest} ms; ${results.filter((r) => r.how === 'ECONNRESET').length} resets`);
    // Every one was reset (never a FIN that would read as an empty, finished stream).
    expect(results.filter((r) => r.how !== 'ECONNRESET')).toEqual([]);
    // The slowest waited for a place (at most SETUP_WAIT_MS) and then for one setup deadline.
    expect(slowest).toBeLessThan(SETUP_WAIT_MS + SETUP_TIMEOUT_MS + 10_000);
    // At most the setups (client + hub connection each) and the waiting clients, plus slack.
    expect(peak - baseline).toBeLessThanOrEqual(2 * MAX_SETUPS + MAX_SETUPS_WAITING + 20);
    const stderr = world.connect.stderr.join('\n');
    expect(stderr).toMatch(/connection refused: too many streams being set up \(16 at once, 64 waiting\)/);
    expect(stderr).toMatch(/the hub did not answer the stream request within 3 s/);
    // Refusals are logged rate-limited, not once per connection.
    expect(world.connect.stderr.filter((l) => l.includes('connection refused')).length).toBeLessThan(10);
    expect(world.connect.proc.exitCode).toBeNull();
  }, 90_000);
});

describe('descriptor exhaustion is named', () => {
  it('connect out of descriptors logs the limit and how to raise it, and keeps running', async () => {
    const world = await startProcessWorld();
    // ulimit -n 40: enough to start (about 20 descriptors), not for 60 connections at once.
    const proc = spawn('sh', ['-c', `ulimit -n 40 && exec "${process.execPath}" "${BUNDLE}" connect pi-world echo --listen 127.0.0.1:0 --ca '${join(world.dataDir, 'ca.pem')}'`], {
      env: { ...process.env, DEVSTREAMS_LOG_FORMAT: 'json', DEVSTREAMS_CONNECTION_STRING: world.serviceString },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
    try {
      const deadline = Date.now() + 20_000;
      while (!/listening on /.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const port = Number(/:(\d+),/.exec(out)![1]);
      const clients = Array.from({ length: 60 }, () => netConnect(port, '127.0.0.1').on('error', () => undefined));
      while (!/too many open files/.test(err) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const c of clients) c.destroy();
      // Whichever ran out first (accepting a client or dialing the hub), the line names the limit and the fix.
      expect(err).toMatch(/(cannot accept a connection|stream to pi-world\/echo failed: cannot connect to the hub at [^:]+:\d+): too many open files \(EMFILE\): this process may have 40 open at once; raise it with LimitNOFILE=/);
      expect(proc.exitCode).toBeNull();
    } finally {
      proc.kill('SIGKILL');
      await world.stop();
    }
  }, 60_000);
});
