import { execFileSync } from 'node:child_process';
import { existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BOOT_CONFIG_NAME, BOOT_CONNECTION_STRING_NAME, BOOT_ERROR_NAME, MAX_DROPPED_BYTES } from '../agent/provision';
import { runCliToEnd } from './helpers/cli';

/**
 * `devstreams provision` (first boot, real process, real files) against what a hostile or careless
 * card could carry: links, FIFOs, huge files, a YAML alias bomb; and the dropped secret overwritten
 * before it is unlinked. Links are made as root in CI, as the first-boot unit runs.
 */
const KEY = Buffer.alloc(32, 9).toString('base64');
const CS = `HostName=hub.example.com;DeviceId=pi-007;SharedAccessKey=${KEY}`;

let dir: string;
let boot: string;
let etc: string;
let victim: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'devstreams-provision-hard-'));
  boot = join(dir, 'boot');
  etc = join(dir, 'etc');
  mkdirSync(boot);
  mkdirSync(etc);
  victim = join(dir, 'shadow');
  writeFileSync(victim, 'root:$6$very-secret-hash:19000:0:99999:7:::\n', { mode: 0o600 });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const provision = (): Promise<{ code: number | null; stdout: string; stderr: string }> =>
  runCliToEnd(['provision', '--boot-dir', boot, '--config-dir', etc, '--group', 'root']);
const errorText = (): string => readFileSync(join(boot, BOOT_ERROR_NAME), 'utf8');

describe('devstreams provision refuses what it must not read or write', () => {
  it('a dropped link is refused, and what it points at never reaches the error file', async () => {
    symlinkSync(victim, join(boot, BOOT_CONNECTION_STRING_NAME));
    const r = await provision();
    expect(r.code).toBe(78);
    expect(errorText()).toContain(`${BOOT_CONNECTION_STRING_NAME} is a symbolic link: refused`);
    expect(errorText()).not.toContain('very-secret-hash');
    expect(r.stderr).not.toContain('very-secret-hash');
    expect(existsSync(join(etc, 'connection-string'))).toBe(false);
  });

  it('a link planted at the error file name is replaced, not written through', async () => {
    symlinkSync(victim, join(boot, BOOT_ERROR_NAME));
    writeFileSync(join(boot, BOOT_CONNECTION_STRING_NAME), 'not a connection string');
    const r = await provision();
    expect(r.code).toBe(78);
    expect(readFileSync(victim, 'utf8')).toContain('very-secret-hash');
    expect(statSync(victim).mode & 0o777).toBe(0o600);
    expect(lstatSync(join(boot, BOOT_ERROR_NAME)).isFile()).toBe(true);
    expect(errorText()).toContain('not a device connection string');
  });

  it('a FIFO or an oversized file is refused without hanging or reading it whole', async () => {
    execFileSync('mkfifo', [join(boot, BOOT_CONNECTION_STRING_NAME)]);
    writeFileSync(join(boot, BOOT_CONFIG_NAME), `# ${'x'.repeat(MAX_DROPPED_BYTES)}\nhub: {}\n`);
    const r = await provision();
    expect(r.code).toBe(78);
    expect(errorText()).toContain(`${BOOT_CONNECTION_STRING_NAME} is not a regular file: refused`);
    expect(errorText()).toMatch(new RegExp(`${BOOT_CONFIG_NAME} is \\d+ bytes: refused \\(at most ${MAX_DROPPED_BYTES}\\)`));
  });

  it('a YAML alias bomb becomes the error file and exit 78, not a stack trace', async () => {
    const bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 9; i++) bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(',')}]`);
    writeFileSync(join(boot, BOOT_CONFIG_NAME), `${bomb.join('\n')}\nhub:\n  connection_string: "${CS}"\n`);
    const r = await provision();
    expect(r.code).toBe(78);
    expect(errorText()).toMatch(/YAML: Excessive alias count/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('the dropped secret is overwritten before it is unlinked (best effort on flash)', async () => {
    const dropped = join(boot, BOOT_CONNECTION_STRING_NAME);
    writeFileSync(dropped, `${CS}\n`);
    // A second name for the same inode shows what the blocks hold after the unlink.
    const witness = join(dir, 'witness');
    linkSync(dropped, witness);
    const r = await provision();
    expect(r.code).toBe(0);
    expect(existsSync(dropped)).toBe(false);
    expect(readFileSync(join(etc, 'connection-string'), 'utf8')).toBe(`${CS}\n`);
    const left = readFileSync(witness);
    expect(left.length).toBe(CS.length + 1);
    expect(left.every((b) => b === 0)).toBe(true);
  });

  it('a dropped config that held the secret inline is overwritten too', async () => {
    const dropped = join(boot, BOOT_CONFIG_NAME);
    writeFileSync(dropped, `hub:\n  connection_string: "${CS}"\nservices: {}\n`);
    const witness = join(dir, 'witness');
    linkSync(dropped, witness);
    expect((await provision()).code).toBe(0);
    expect(readFileSync(witness).toString('utf8')).not.toContain(KEY);
  });
});
