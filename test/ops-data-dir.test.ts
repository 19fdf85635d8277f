import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HubClient } from '../service/hub-client';
import { formatServiceConnectionString, parseServiceConnectionString } from '../wire';
import { HubDataDir } from '../hub/data-dir';
import { BUNDLE, requireBundle, startHubProcess } from './helpers/cli';
import { freePort } from './helpers/free-port';

/**
 * Read-only and full file systems are real mounts in a private mount namespace (`unshare -m`): a
 * bind mount remounted read-only, and a tmpfs of a few KiB. That needs root (CI has it); elsewhere
 * these tests are skipped and say so.
 */
const canMount = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o size=4k tmpfs /mnt 2>/dev/null || mount -t tmpfs -o size=4k tmpfs /tmp'], { stdio: 'ignore' }).status === 0;

/** `sh -c` in a private mount namespace: `setup` (mounts), then `devstreams ARGS`; stdout, stderr and exit status. */
function runInNamespace(setup: string, args: string[], after = ''): Promise<{ code: number | null; stdout: string; stderr: string }> & { stop: () => void } {
  requireBundle();
  const quoted = args.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const script = `${setup} && { ${after ? '' : 'exec '}"${process.execPath}" "${BUNDLE}" ${quoted}; ${after ? `echo "exit=$?" >&2; ${after};` : ''} }`;
  const proc = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { env: { ...process.env, DEVSTREAMS_LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  // Without `after`, sh and unshare exec: the pid is devstreams' own.
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => proc.on('close', (code) => resolve({ code, stdout, stderr })));
  return Object.assign(done, { stop: () => void proc.kill('SIGTERM') });
}

/** Lines on stderr that are not JSON log lines: what a person reads. */
function plainLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l && !l.startsWith('{') && !l.startsWith('exit='));
}

describe('the hub data directory', () => {
  const root = mkdtempSync(join(tmpdir(), 'devstreams-datadir-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('does not rewrite hub.json when nothing changed', async () => {
    const dataDir = join(root, 'steady');
    const port = await freePort();
    const first = await startHubProcess(dataDir, port);
    await first.stop();
    const before = statSync(join(dataDir, 'hub.json'));
    const second = await startHubProcess(dataDir, port);
    expect(await second.stop()).toEqual({ code: 0, signal: null });
    const after = statSync(join(dataDir, 'hub.json'));
    expect({ ino: after.ino, mtime: after.mtimeMs }).toEqual({ ino: before.ino, mtime: before.mtimeMs });
    expect(JSON.parse(readFileSync(join(dataDir, 'hub.json'), 'utf8'))).toEqual({ host_name: `127.0.0.1:${port}`, listen: `127.0.0.1:${port}` });
  }, 60_000);

  it.skipIf(!canMount)('a read-only data directory serves a hub that needs no change', async () => {
    const parent = join(root, 'ro');
    const dataDir = join(parent, 'hub');
    const port = await freePort();
    const first = await startHubProcess(dataDir, port);
    await first.stop();
    const before = statSync(join(dataDir, 'hub.json')).mtimeMs;
    const secrets = new HubDataDir(dataDir).secrets();
    const client = new HubClient({
      service: parseServiceConnectionString(formatServiceConnectionString({ hostName: `127.0.0.1:${port}`, sharedAccessKeyName: secrets.service_policy_name, sharedAccessKey: secrets.service_policy_key })),
      caPem: readFileSync(join(dataDir, 'ca.pem')),
    });
    // The hub serves one request from its read-only directory, then the script stops it.
    const served = runInNamespace(`mount --bind '${parent}' '${parent}' && mount -o remount,bind,ro '${parent}' && touch '${dataDir}/probe' 2>/dev/null; test ! -e '${dataDir}/probe'`, ['hub', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`]);
    let devices: unknown;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      devices = await client.listDevices().catch(() => undefined);
      if (devices) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    client.close();
    expect(devices).toEqual([]);
    served.stop();
    const r = await served;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^hub listening on 127\.0\.0\.1:\d+/);
    expect(statSync(join(dataDir, 'hub.json')).mtimeMs).toBe(before);
  }, 60_000);

  it.skipIf(!canMount)('a first start on a read-only file system exits 73 with one line naming the directory', async () => {
    const parent = join(root, 'ro-first');
    mkdirSync(parent);
    const r = await runInNamespace(`mount --bind '${parent}' '${parent}' && mount -o remount,bind,ro '${parent}'`, ['hub', '--data-dir', join(parent, 'hub'), '--listen', '127.0.0.1:0']);
    expect(r.code).toBe(73);
    expect(plainLines(r.stderr)).toEqual([`devstreams: cannot create ${join(parent, 'hub')}: read-only file system (EROFS)`]);
  }, 60_000);

  it.skipIf(!canMount)('a first start on a full disk exits 74 with one line naming the file, and leaves nothing behind', async () => {
    const dataDir = join(root, 'full');
    mkdirSync(dataDir);
    // 8 KiB of tmpfs: the first two small files fit, the CA key does not.
    const r = await runInNamespace(`mount -t tmpfs -o size=8k tmpfs '${dataDir}'`, ['hub', '--data-dir', dataDir, '--listen', '127.0.0.1:0'], `echo "left:$(ls -A '${dataDir}' | tr '\\n' ' ')" >&2`);
    expect(r.stderr).toMatch(/^exit=74$/m);
    expect(plainLines(r.stderr).filter((l) => !l.startsWith('left:'))).toEqual([expect.stringMatching(new RegExp(`^devstreams: cannot write ${dataDir}/[\\w.-]+: no space left on device \\(ENOSPC\\)$`))]);
    // Nothing half-made: no secrets without a CA, no temp files.
    expect(r.stderr).toMatch(/^left: ?$/m);
  }, 60_000);
});
