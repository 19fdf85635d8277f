import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DeviceRegistry, type RegistryChange } from '../hub/device-registry';
import { HubDataDir } from '../hub/data-dir';
import { capturingLogger } from './helpers/log-capture';

/**
 * The registry as the hub follows it: change events for what another process wrote, the last good
 * registry kept while the file is broken, ids that mean something to JavaScript refused.
 */
describe('device registry file', () => {
  const dirs: string[] = [];
  const registries: DeviceRegistry[] = [];
  afterEach(() => {
    for (const r of registries.splice(0)) r.stop();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  function fresh(): { dir: HubDataDir; file: string } {
    const d = mkdtempSync(join(tmpdir(), 'devstreams-registry-'));
    dirs.push(d);
    return { dir: new HubDataDir(d), file: join(d, 'devices.json') };
  }
  function nextChange(r: DeviceRegistry): Promise<RegistryChange> {
    return new Promise((resolve) => r.once('change', resolve));
  }

  it('announces each change another process makes, at once (watch), with what changed', async () => {
    const { dir } = fresh();
    const tool = new DeviceRegistry(dir);
    tool.add('pi-1');
    const hub = new DeviceRegistry(dir);
    registries.push(hub);
    hub.load();
    hub.watch();
    const seen: RegistryChange[] = [];
    hub.on('change', (c) => seen.push(c));

    let next = nextChange(hub);
    tool.add('pi-2');
    expect(await next).toEqual({ deviceId: 'pi-2', change: 'added' });
    next = nextChange(hub);
    tool.setStatus('pi-1', 'disabled');
    expect(await next).toEqual({ deviceId: 'pi-1', change: 'disabled' });
    expect(hub.isEnabled('pi-1')).toBe(false);
    next = nextChange(hub);
    tool.setStatus('pi-1', 'enabled');
    expect(await next).toEqual({ deviceId: 'pi-1', change: 'enabled' });
    next = nextChange(hub);
    tool.rotateKey('pi-2', 'secondary');
    expect(await next).toEqual({ deviceId: 'pi-2', change: 'keys-changed', keys: ['secondary'] });
    next = nextChange(hub);
    tool.remove('pi-2');
    expect(await next).toEqual({ deviceId: 'pi-2', change: 'removed' });
    expect(hub.get('pi-2')).toBeUndefined();
    expect(seen.map((c) => c.change)).toEqual(['added', 'disabled', 'enabled', 'keys-changed', 'removed']);
    // Writes leave no temp files behind.
    expect(readdirSync(dir.dir).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  it('refuses ids that mean something to JavaScript objects or paths', () => {
    const { dir, file } = fresh();
    const r = new DeviceRegistry(dir);
    for (const id of ['__proto__', 'constructor', 'hasOwnProperty', 'toString', 'prototype', '..', 'a/b', '']) {
      expect(() => r.add(id), id).toThrow(expect.objectContaining({ code: 'EUSAGE' }));
    }
    expect(r.get('__proto__')).toBeUndefined();
    expect(r.get('constructor')).toBeUndefined();
    r.add('pi-1');
    expect(Object.keys(JSON.parse(readFileSync(file, 'utf8')).devices)).toEqual(['pi-1']);
  });

  it('keeps the last good registry while the file is broken, says where once, and takes the fixed file', async () => {
    const { dir, file } = fresh();
    const tool = new DeviceRegistry(dir);
    tool.add('pi-1');
    const good = readFileSync(file, 'utf8');
    const logs = capturingLogger();
    const hub = new DeviceRegistry(dir, logs.log);
    registries.push(hub);
    hub.load();
    const key = hub.get('pi-1')!.primary_key;

    const truncated = good.slice(0, 40);
    writeFileSync(file, truncated);
    const lines = truncated.split('\n');
    const where = `${lines.length}:${lines.at(-1)!.length + 1}`;
    for (let i = 0; i < 3; i++) expect(hub.get('pi-1')?.primary_key).toBe(key);
    const errors = logs.lines.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toBe(`${file}:${where}: Unterminated string; keeping the last good devices.json and serving with it until the file is fixed`);

    // The tools refuse to write over it, name the place, and --force sets it aside.
    expect(() => tool.add('pi-2')).toThrow(`${file}:${where}: Unterminated string; not writing over a broken devices.json`);
    writeFileSync(file, `{"devices": {"__proto__": {"primary_key": "a", "secondary_key": "b"}}}`);
    expect(hub.get('pi-1')?.primary_key).toBe(key);
    expect(logs.lines.filter((l) => l.level === 50).at(-1)!.msg).toMatch(/devices\.json:1:14: device id "__proto__" is reserved/);

    writeFileSync(file, good);
    expect(hub.get('pi-1')?.primary_key).toBe(key);
    expect(logs.lines.some((l) => /devices\.json is good again/.test(String(l.msg)))).toBe(true);

    writeFileSync(file, '{"devices": {');
    tool.add('pi-2', { force: true });
    expect(readdirSync(dir.dir).filter((f) => f.startsWith('devices.json.broken-'))).toHaveLength(1);
    expect(hub.list()).toEqual(['pi-2']);
  });

  it('a devices.json that disappears under a running hub is a problem, not an empty registry', () => {
    const { dir, file } = fresh();
    new DeviceRegistry(dir).add('pi-1');
    const logs = capturingLogger();
    const hub = new DeviceRegistry(dir, logs.log);
    registries.push(hub);
    hub.load();
    const removed: string[] = [];
    hub.on('change', (c) => removed.push(c.deviceId));
    rmSync(file);
    expect(hub.get('pi-1')).toBeDefined();
    expect(removed).toEqual([]);
    expect(logs.lines.filter((l) => l.level === 50).map((l) => l.msg)).toEqual([`${file}:1:1: the file is gone; keeping the last good devices.json and serving with it until the file is fixed`]);
  });

  it('a starting hub refuses a broken registry with file:line:col (no last good to keep)', () => {
    const { dir, file } = fresh();
    writeFileSync(file, '{\n  "devices": {\n    "pi-1": {"primary_key": 1}\n');
    expect(() => new DeviceRegistry(dir).load()).toThrow(expect.objectContaining({ code: 'ECONFIG', message: expect.stringMatching(/devices\.json:4:1: /) }));
  });
});
