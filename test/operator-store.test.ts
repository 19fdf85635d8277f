import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HubDataDir } from '../hub/data-dir';
import { OperatorStore, operatorAllows } from '../hub/operators';

/** The operator store in memory against a real operators.json that another store (a `hub` tool) changes. */
describe('OperatorStore', () => {
  let dir: string;
  const store = (): OperatorStore => new OperatorStore({ dataDir: new HubDataDir(dir), legacy: { name: 'service', key: 'legacy-key' } });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'devstreams-operators-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("follows another process's add, rotate and remove at the next lookup", () => {
    const hub = store();
    const tool = store();
    expect(hub.get('service')).toMatchObject({ name: 'service', key: 'legacy-key' });
    expect(hub.get('alice')).toBeUndefined();
    const added = tool.add('alice', { devices: ['pi-*'] });
    expect(hub.get('alice')).toMatchObject({ key: added.key, revision: added.revision, devices: ['pi-*'] });
    const rotated = tool.rotate('alice');
    expect(rotated.revision).not.toBe(added.revision);
    expect(hub.get('alice')).toMatchObject({ key: rotated.key, revision: rotated.revision });
    expect(hub.revision('alice')).toBe(rotated.revision);
    expect(hub.list().map((o) => o.name)).toEqual(['alice', 'service']);
    tool.remove('alice');
    expect(hub.get('alice')).toBeUndefined();
    expect(hub.revision('alice')).toBeUndefined();
  });

  it('matches device and service patterns, the same answer on every call', () => {
    const op = { devices: ['pi-*', 'lab-?'], services: ['ssh'] };
    for (let i = 0; i < 2; i++) {
      expect(operatorAllows(op, 'pi-001')).toBe(true);
      expect(operatorAllows(op, 'lab-1')).toBe(true);
      expect(operatorAllows(op, 'lab-10')).toBe(false);
      expect(operatorAllows(op, 'xpi-001')).toBe(false);
      expect(operatorAllows(op, 'pi-001', 'ssh')).toBe(true);
      expect(operatorAllows(op, 'pi-001', 'web')).toBe(false);
      expect(operatorAllows({}, 'anything', 'any')).toBe(true);
    }
  });
});
