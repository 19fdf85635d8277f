import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { materializeAddon } from '../agent/pty/embedded-addon';

/** The single executable's PTY addon written to disk (agent/pty/embedded-addon.ts), on real files. */
describe('materializeAddon', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'devstreams-addon-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the bytes once to a content-addressed file, read-only and executable, leaving no temp file', () => {
    const native = join(dir, 'native');
    const bytes = Buffer.from('not really an ELF file');
    const file = materializeAddon(bytes, native);
    expect(file).toMatch(/\/pty-[0-9a-f]{32}\.node$/);
    expect(readFileSync(file)).toEqual(bytes);
    expect(statSync(file).mode & 0o777).toBe(0o500);
    expect(statSync(native).mode & 0o777).toBe(0o700);
    const { mtimeMs } = statSync(file);
    expect(materializeAddon(bytes, native)).toBe(file);
    expect(statSync(file).mtimeMs).toBe(mtimeMs);
    expect(readdirSync(native)).toEqual([file.split('/').pop()]);
  });

  it('replaces a file under its name whose content is not the addon', () => {
    const native = join(dir, 'native');
    const bytes = Buffer.from('the addon');
    const file = materializeAddon(bytes, native);
    chmodSync(file, 0o600);
    writeFileSync(file, 'tampered');
    expect(materializeAddon(bytes, native)).toBe(file);
    expect(readFileSync(file)).toEqual(bytes);
    expect(statSync(file).mode & 0o777).toBe(0o500);
  });

  it('refuses a directory others may write into', () => {
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    expect(() => materializeAddon(Buffer.from('x'), open)).toThrow(/writable by group or others/);
  });
});
