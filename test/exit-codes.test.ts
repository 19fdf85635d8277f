import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/exit-codes';
import { formatServiceConnectionString, parseServiceConnectionString } from '../wire';
import { runCliToEnd } from './helpers/cli';
import { startStack, type Stack } from './helpers/stack';

/** One exit-code table for every subcommand (docs/exit-codes.md), checked on the real CLI. */
describe('exit codes: one table for every subcommand', () => {
  let stack: Stack;
  let dir: string;
  beforeAll(async () => {
    stack = await startStack();
    await stack.startAgent('  ssh:\n    port: 9\n  shell:\n    pty:\n      command: /bin/sh\n');
    dir = mkdtempSync(join(tmpdir(), 'devstreams-exit-'));
  });
  afterAll(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('usage errors exit 64: a missing required option (was 1), an unknown command or option, a missing argument', async () => {
    for (const args of [['connect', 'pi-001', 'ssh'], ['hub', 'add-device', 'x'], ['agent'], ['nosuch'], ['devices', '--nosuch'], ['shell']]) {
      const r = await runCliToEnd(args);
      expect({ args, code: r.code }).toEqual({ args, code: EXIT.USAGE });
    }
  });

  it('the same bad key gives the same code (77) from devices, shell, proxy and connect', async () => {
    const s = parseServiceConnectionString(stack.serviceConnectionString);
    const env = { DEVSTREAMS_CONNECTION_STRING: formatServiceConnectionString({ ...s, sharedAccessKey: Buffer.alloc(32, 7).toString('base64') }) };
    for (const args of [['devices'], ['shell', 'pi-001', '--', 'true'], ['proxy', 'pi-001'], ['connect', 'pi-001', 'ssh', '-l', '127.0.0.1:0']]) {
      const r = await runCliToEnd([args[0]!, '--ca', stack.caFile, ...args.slice(1)], env);
      expect({ args, code: r.code }).toEqual({ args, code: EXIT.REFUSED });
      expect(r.stderr).toMatch(/^devstreams: the hub refused the service credentials/m);
    }
  });

  it('no connection string is a usage error (64) and a malformed one a config error (78), everywhere', async () => {
    for (const args of [['devices'], ['shell', 'pi-001'], ['proxy', 'pi-001'], ['ssh', 'pi-001', 'true']]) {
      expect((await runCliToEnd(args, { DEVSTREAMS_CONNECTION_STRING: '' })).code).toBe(EXIT.USAGE);
      expect((await runCliToEnd(args, { DEVSTREAMS_CONNECTION_STRING: 'HostName=x' })).code).toBe(EXIT.CONFIG);
    }
  });

  it('status exits 69 when the agent runs but is not connected, 0 when connected', async () => {
    const now = new Date().toISOString();
    const snapshot = (state: 'connected' | 'disconnected') => ({
      version: '0', pid: process.pid, device: 'pi-001', hub: 'hub:8443', started_at: now, updated_at: now,
      connection: { state, since: now, reconnects: 3, ...(state === 'disconnected' ? { last_error: 'the hub refused the device\'s credentials' } : {}) },
      streams: { active: [], total: 0, refused_total: 0 }, bytes: { to_target: 0, from_target: 0 }, recent_refusals: [],
    });
    const file = join(dir, 'status.json');
    writeFileSync(file, JSON.stringify(snapshot('disconnected')));
    expect((await runCliToEnd(['status', '--file', file])).code).toBe(EXIT.UNAVAILABLE);
    writeFileSync(file, JSON.stringify(snapshot('connected')));
    expect((await runCliToEnd(['status', '--file', file])).code).toBe(EXIT.OK);
  });

  it('--help names every subcommand, nested ones too, and prints the table', async () => {
    const r = await runCliToEnd(['--help']);
    expect(r.code).toBe(0);
    for (const name of ['hub add-device', 'hub service-string', 'hub rotate-key', 'shell', 'status', 'devices', 'proxy', 'ssh', 'check-config']) expect(r.stdout).toContain(name);
    expect(r.stdout).toMatch(/^\s+77\s+refused/m);
    for (const cmd of ['connect', 'shell', 'devices', 'proxy']) expect((await runCliToEnd([cmd, '--help'])).stdout).toContain('DEVSTREAMS_CONNECTION_STRING');
  });

  it("an unreadable CA, key or password file given on the command line is a config error (78), the hub's broker files too", async () => {
    const missing = join(dir, 'missing.pem');
    const devices = await runCliToEnd(['devices', '--ca', missing], { DEVSTREAMS_CONNECTION_STRING: stack.serviceConnectionString });
    expect(devices.code).toBe(EXIT.CONFIG);
    for (const flag of ['--broker-ca', '--broker-password-file']) {
      const r = await runCliToEnd(['hub', '--data-dir', join(dir, 'fleet-hub'), '--listen', '127.0.0.1:0', '--broker', 'mqtt://127.0.0.1:9', '--broker-username', 'hub', flag, missing]);
      expect({ flag, code: r.code }).toEqual({ flag, code: EXIT.CONFIG });
      expect(r.stderr).toContain(`${flag}: cannot read ${missing}: ENOENT`);
    }
  });

  it("the hub refuses a broker password or key file that group or others may read (78), as the agent refuses its own", async () => {
    const open = join(dir, 'broker-secret');
    writeFileSync(open, 'secret\n');
    chmodSync(open, 0o644);
    for (const flag of ['--broker-password-file', '--broker-key']) {
      const extra = flag === '--broker-key' ? ['--broker-cert', open] : [];
      const r = await runCliToEnd(['hub', '--data-dir', join(dir, 'fleet-hub'), '--listen', '127.0.0.1:0', '--broker', 'mqtt://127.0.0.1:9', '--broker-username', 'hub', ...extra, flag, open]);
      expect({ flag, code: r.code }).toEqual({ flag, code: EXIT.CONFIG });
      expect(r.stderr).toContain(`${flag}: ${open} is accessible by group or others (mode 0644); the hub refuses to start: run chmod 600 ${open}`);
      expect(r.stderr).not.toContain('secret\n');
    }
  });
});
