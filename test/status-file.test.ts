import { spawn, spawnSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusSnapshot } from '../agent/status';
import { BUNDLE, runCli, runCliToEnd } from './helpers/cli';
import { until } from './helpers/stack';

/**
 * The agent's status file (issues 11 and 13), with a real agent process and real files: written
 * without following a link planted in its directory, EROFS reported as EROFS, and `devstreams
 * status` never calling a running agent "NOT RUNNING" because its file could not be written.
 */
const isRoot = process.getuid?.() === 0;
const canUnshare = isRoot && spawnSync('unshare', ['-m', 'true']).status === 0;

function readStatus(file: string): StatusSnapshot | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as StatusSnapshot;
  } catch {
    return undefined;
  }
}

describe('agent status file (real agent process)', () => {
  let dir: string;
  const procs: Array<{ stop: () => Promise<unknown> }> = [];
  // An agent needs a hub to point at, not one that answers: the status file is written either way.
  const cs = `HostName=127.0.0.1:1;DeviceId=pi-status;SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`;

  function agentConfig(name: string, statusFile: string): string {
    const secret = join(dir, `${name}.secret`);
    writeFileSync(secret, `${cs}\n`, { mode: 0o600 });
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, `hub:\n  connection_string_file: ${secret}\nstatus_file: ${statusFile}\ntelemetry:\n  interval: off\nservices: {}\n`);
    return file;
  }

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'devstreams-status-'));
  });

  afterAll(async () => {
    for (const p of procs) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it.runIf(isRoot)('a link planted where the old code put its temp file is not followed: the target keeps its bytes and mode', async () => {
    const run = join(dir, 'run');
    mkdirSync(run, { mode: 0o777 });
    const statusFile = join(run, 'status.json');
    const agent = runCli(['agent', '--config', agentConfig('link', statusFile)]);
    procs.push(agent);
    await until(() => readStatus(statusFile) !== undefined, 'the first status write', 20_000);
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'secret\n', { mode: 0o600 });
    // Another user who can write the directory knows the pid (ps) and plants the link the old code followed.
    const pid = agent.proc.pid!;
    symlinkSync(victim, `${statusFile}.${pid}.tmp`);
    const before = readStatus(statusFile)!.updated_at;
    await until(() => readStatus(statusFile)?.updated_at !== before, 'the next status write', 30_000);
    expect(readFileSync(victim, 'utf8')).toBe('secret\n');
    expect(statSync(victim).mode & 0o777).toBe(0o600);
    expect(lstatSync(statusFile).isFile()).toBe(true);
    expect(statSync(statusFile).mode & 0o777).toBe(0o644);
  }, 60_000);

  it.runIf(canUnshare)('a read-only file system is reported as EROFS, and `status` says the agent is running', async () => {
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    const statusFile = join(ro, 'run', 'status.json');
    const config = agentConfig('ro', statusFile);
    // The agent alone sees a read-only mount at `ro` (its own mount namespace).
    const proc = spawn('unshare', ['-m', 'sh', '-c', `mount -t tmpfs -o ro tmpfs '${ro}' && exec '${process.execPath}' '${BUNDLE}' agent --config '${config}'`], {
      env: { ...process.env, DEVSTREAMS_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise((r) => proc.on('exit', r));
    procs.push({ stop: () => (proc.kill('SIGTERM'), exited) });
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await until(() => stderr.includes('cannot write the status file'), 'the status write to fail', 20_000);
    const line = stderr.split('\n').find((l) => l.includes('cannot write the status file'))!;
    expect((JSON.parse(line) as { err: string }).err).toBe('EROFS');
    const status = await runCliToEnd(['status', '--file', statusFile]);
    expect(status.code).toBe(69);
    expect(status.stderr).toContain(`an agent is running as pid ${proc.pid}`);
    expect(status.stderr).not.toMatch(/no agent process is running/);
  }, 60_000);

  it('a stale status file whose agent is alive is not called NOT RUNNING; one whose agent is gone is', async () => {
    const file = join(dir, 'stale.json');
    const old = new Date(Date.now() - 5 * 60_000).toISOString();
    const snapshot: StatusSnapshot = {
      version: '1.0.0',
      pid: process.pid,
      device: 'pi-status',
      hub: 'hub.example',
      started_at: old,
      updated_at: old,
      connection: { state: 'connected', since: old, reconnects: 0 },
      streams: { active: [], total: 0, refused_total: 0 },
      bytes: { to_target: 0, from_target: 0 },
      recent_refusals: [],
    };
    writeFileSync(file, JSON.stringify(snapshot));
    const alive = await runCliToEnd(['status', '--file', file]);
    expect(alive.code).toBe(69);
    expect(alive.stdout).toMatch(/RUNNING but not updating its status file: it cannot write it \(see its log\) or is stuck; status last written 5m ago/);
    expect(alive.stdout).not.toMatch(/NOT RUNNING/);
    // A pid that has exited.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    writeFileSync(file, JSON.stringify({ ...snapshot, pid: Number(gone) }));
    const dead = await runCliToEnd(['status', '--file', file]);
    expect(dead.code).toBe(69);
    expect(dead.stdout).toMatch(/NOT RUNNING: no such process/);
  });
});
