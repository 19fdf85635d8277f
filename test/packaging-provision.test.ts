import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CONNECTION_STRING_ENV, ConfigError, parseAgentConfig } from '../agent/config';
import { BOOT_CONFIG_NAME, BOOT_CONNECTION_STRING_NAME, BOOT_ERROR_NAME, CREDENTIAL_PATH, provisionFromBoot } from '../agent/provision';

/** First boot of a Pi image, on real files: a boot partition directory and an /etc/devstreams directory. */
const KEY = Buffer.alloc(32, 9).toString('base64');
const CS = `HostName=hub.example.com;DeviceId=pi-007;SharedAccessKey=${KEY}`;
const GID = 4242;

let dir: string;
let firmware: string;
let boot: string;
let etc: string;
let groupFile: string;
const provision = () => provisionFromBoot({ bootDirs: [firmware, boot], configDir: etc, groupFile });
const mode = (f: string) => statSync(f).mode & 0o777;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'devstreams-provision-'));
  firmware = join(dir, 'boot/firmware');
  boot = join(dir, 'boot');
  etc = join(dir, 'etc/devstreams');
  mkdirSync(firmware, { recursive: true });
  mkdirSync(etc, { recursive: true });
  groupFile = join(dir, 'group');
  writeFileSync(groupFile, `root:x:0:\ndevstreamsx:x:1:\ndevstreams:x:${GID}:\n`);
  // What the package installs.
  writeFileSync(join(etc, 'agent.yaml'), readFileSync(join(__dirname, '../packaging/agent.yaml')), { mode: 0o640 });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('devstreams provision (first boot)', () => {
  it('does nothing when nothing was dropped', () => {
    const before = readFileSync(join(etc, 'agent.yaml'), 'utf8');
    expect(provision()).toEqual({ installed: [], removed: [] });
    expect(readFileSync(join(etc, 'agent.yaml'), 'utf8')).toBe(before);
    expect(existsSync(join(etc, 'connection-string'))).toBe(false);
  });

  it('installs a dropped connection string as a root-only file and removes it from the boot partition', () => {
    writeFileSync(join(firmware, BOOT_CONNECTION_STRING_NAME), `${CS}\r\n`);
    const before = readFileSync(join(etc, 'agent.yaml'), 'utf8');
    const r = provision();
    expect(r.bootDir).toBe(firmware);
    expect(readFileSync(join(etc, 'connection-string'), 'utf8')).toBe(`${CS}\n`);
    expect(mode(join(etc, 'connection-string'))).toBe(0o600);
    expect(statSync(join(etc, 'connection-string')).uid).toBe(0);
    expect(existsSync(join(firmware, BOOT_CONNECTION_STRING_NAME))).toBe(false);
    expect(readFileSync(join(etc, 'agent.yaml'), 'utf8')).toBe(before);
    // The packaged config plus that secret is a valid config (as the unit passes it, by credential).
    const { problems } = parseAgentConfig(before, 'agent.yaml', { [CONNECTION_STRING_ENV]: readFileSync(join(etc, 'connection-string'), 'utf8').trim() });
    expect(problems).toEqual([]);
  });

  it('installs a dropped config group-readable, with its secret moved out into the credential file', () => {
    writeFileSync(join(boot, BOOT_CONFIG_NAME), `# my pi\nhub:\n  connection_string: "${CS}"\nservices:\n  ssh:\n    port: 22 # sshd\n`);
    const r = provision();
    expect(r.bootDir).toBe(boot);
    const config = readFileSync(join(etc, 'agent.yaml'), 'utf8');
    expect(config).not.toContain(KEY);
    expect(config).toContain(`connection_string_file: ${CREDENTIAL_PATH}`);
    expect(config).toContain('# sshd');
    expect(mode(join(etc, 'agent.yaml'))).toBe(0o640);
    expect(statSync(join(etc, 'agent.yaml')).gid).toBe(GID);
    expect(readFileSync(join(etc, 'connection-string'), 'utf8').trim()).toBe(CS);
    expect(mode(join(etc, 'connection-string'))).toBe(0o600);
    expect(existsSync(join(boot, BOOT_CONFIG_NAME))).toBe(false);
    const { config: parsed, problems } = parseAgentConfig(config, 'agent.yaml', { [CONNECTION_STRING_ENV]: CS });
    expect(problems).toEqual([]);
    expect(Object.keys(parsed!.services)).toEqual(['ssh']);
  });

  it('takes a config without a secret together with a dropped connection string', () => {
    writeFileSync(join(firmware, BOOT_CONFIG_NAME), `hub:\n  connection_string_file: ${CREDENTIAL_PATH}\nservices:\n  web:\n    port: 80\n`);
    writeFileSync(join(firmware, BOOT_CONNECTION_STRING_NAME), CS);
    const r = provision();
    expect(r.removed.sort()).toEqual([join(firmware, BOOT_CONFIG_NAME), join(firmware, BOOT_CONNECTION_STRING_NAME)].sort());
    expect(readFileSync(join(etc, 'agent.yaml'), 'utf8')).toContain('web:');
    expect(readFileSync(join(etc, 'connection-string'), 'utf8').trim()).toBe(CS);
  });

  it('installs nothing from an invalid drop, keeps it, and explains every problem next to it', () => {
    const before = readFileSync(join(etc, 'agent.yaml'), 'utf8');
    writeFileSync(join(firmware, BOOT_CONFIG_NAME), `hub:\n  connection_string: "${CS}"\nservices:\n  ssh:\n    port: 70000\n  web:\n    prot: 80\n`);
    let err: unknown;
    try {
      provision();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    expect(problems.length).toBeGreaterThanOrEqual(2);
    expect(problems[0]).toMatchObject({ file: join(firmware, BOOT_CONFIG_NAME), line: 5 });
    const explained = readFileSync(join(firmware, BOOT_ERROR_NAME), 'utf8');
    expect(explained).toContain(`${join(firmware, BOOT_CONFIG_NAME)}:5:`);
    expect(explained).not.toContain(KEY);
    expect(existsSync(join(firmware, BOOT_CONFIG_NAME))).toBe(true);
    expect(readFileSync(join(etc, 'agent.yaml'), 'utf8')).toBe(before);
    expect(existsSync(join(etc, 'connection-string'))).toBe(false);

    // Fixed on the PC and dropped again: installed, and the explanation goes away too.
    writeFileSync(join(firmware, BOOT_CONFIG_NAME), `hub:\n  connection_string: "${CS}"\nservices:\n  ssh:\n    port: 22\n`);
    provision();
    expect(existsSync(join(firmware, BOOT_ERROR_NAME))).toBe(false);
    expect(readFileSync(join(etc, 'agent.yaml'), 'utf8')).toContain('ssh:');
  });

  it('refuses a connection string that is not one, without echoing it', () => {
    writeFileSync(join(firmware, BOOT_CONNECTION_STRING_NAME), `HostName=hub.example.com;SharedAccessKey=${KEY}`);
    expect(() => provision()).toThrow(ConfigError);
    expect(readFileSync(join(firmware, BOOT_ERROR_NAME), 'utf8')).not.toContain(KEY);
    expect(existsSync(join(etc, 'connection-string'))).toBe(false);
  });

  it('refuses a config with no connection string anywhere', () => {
    writeFileSync(join(firmware, BOOT_CONFIG_NAME), `hub:\n  connection_string_file: ${CREDENTIAL_PATH}\nservices: {}\n`);
    expect(() => provision()).toThrow(/connection/);
  });
});
