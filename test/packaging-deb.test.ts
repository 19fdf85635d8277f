import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLE } from './helpers/cli';
import { binaryPath, makeBinaries, REPO, withBuildLock } from './helpers/packaging';

/**
 * The arm64 .deb, built the way `make deb` builds it (gzip instead of xz: same contents, seconds
 * instead of a minute), then unpacked into a scratch root and installed, maintainer scripts and all,
 * into a directory laid out like a Pi OS root filesystem by scripts/pi-image-install.sh.
 */
const VERSION = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version as string;
const run = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), 'devstreams-deb-'));
const deb = join(tmp, `devstreams_${VERSION}_arm64.deb`);
const mode = (f: string) => statSync(f).mode & 0o7777;
const sha256 = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

let binarySha: string;

beforeAll(async () => {
  const buildDeb = (out: string) =>
    run('bash', ['packaging/build-deb.sh', 'arm64'], { cwd: REPO, env: { ...process.env, DEVSTREAMS_DEB_OUT: out, DEVSTREAMS_DEB_COMPRESSION: 'gzip', SOURCE_DATE_EPOCH: '1700000000' } });
  await withBuildLock(async () => {
    await makeBinaries(['arm64']);
    binarySha = sha256(binaryPath('arm64'));
    await buildDeb(tmp);
    await buildDeb(join(tmp, 'again'));
  });
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('the arm64 Debian package', () => {
  const root = join(tmp, 'extracted');

  beforeAll(() => {
    mkdirSync(root);
    execFileSync('dpkg-deb', ['-x', deb, root]);
  });

  it('describes itself for arm64 with what Node needs', () => {
    const field = (f: string) => execFileSync('dpkg-deb', ['-f', deb, f], { encoding: 'utf8' }).trim();
    expect(field('Package')).toBe('devstreams');
    expect(field('Version')).toBe(VERSION);
    expect(field('Architecture')).toBe('arm64');
    expect(field('Depends')).toMatch(/libc6 \(>= 2\.28\)/);
    expect(execFileSync('dpkg-deb', ['-I', deb, 'conffiles'], { encoding: 'utf8' }).trim()).toBe('/etc/devstreams/agent.yaml');
  });

  it('holds the executable, the units and a config only the service group may read', () => {
    const listing = execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8' });
    for (const line of listing.trim().split('\n')) expect(line).toMatch(/^\S+ root\/root /);
    expect(mode(join(root, 'usr/bin/devstreams'))).toBe(0o755);
    expect(sha256(join(root, 'usr/bin/devstreams'))).toBe(binarySha);
    expect(mode(join(root, 'etc/devstreams/agent.yaml'))).toBe(0o640);
    for (const unit of ['devstreams-agent.service', 'devstreams-firstboot.service']) expect(mode(join(root, 'lib/systemd/system', unit))).toBe(0o644);
    const unit = readFileSync(join(root, 'lib/systemd/system/devstreams-agent.service'), 'utf8');
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/devstreams agent --config \/etc\/devstreams\/agent\.yaml$/m);
    expect(unit).toMatch(/^StateDirectory=devstreams$/m); // where the executable writes its PTY addon
    // Not started (condition, not failure) until provisioned: the unit's credential file must exist.
    const dropIn = join(root, 'lib/systemd/system/devstreams-agent.service.d/provisioned.conf');
    expect(mode(dropIn)).toBe(0o644);
    expect(readFileSync(dropIn, 'utf8')).toMatch(/^ConditionPathExists=\/etc\/devstreams\/connection-string$/m);
    expect(unit).toMatch(/^LoadCredential=connection-string:\/etc\/devstreams\/connection-string$/m);
    expect(readFileSync(join(root, 'lib/systemd/system/devstreams-firstboot.service'), 'utf8')).toMatch(/^Before=devstreams-agent\.service$/m);
  });

  it('passes systemd-analyze verify (units pointed at the unpacked executable)', () => {
    const dir = join(tmp, 'verify');
    mkdirSync(dir);
    const units = ['devstreams-agent.service', 'devstreams-firstboot.service'].map((u) => {
      const text = readFileSync(join(root, 'lib/systemd/system', u), 'utf8').replaceAll('/usr/bin/devstreams', join(root, 'usr/bin/devstreams'));
      writeFileSync(join(dir, u), text);
      return join(dir, u);
    });
    // verify reads drop-ins next to the unit it is given, as systemd would from /lib/systemd/system.
    cpSync(join(root, 'lib/systemd/system/devstreams-agent.service.d'), join(dir, 'devstreams-agent.service.d'), { recursive: true });
    const r = (() => {
      try {
        return { status: 0, out: execFileSync('systemd-analyze', ['verify', '--man=no', ...units], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
      } catch (e) {
        const err = e as { status: number; stdout: string; stderr: string };
        return { status: err.status, out: err.stdout + err.stderr };
      }
    })();
    expect(r.out).toBe('');
    expect(r.status).toBe(0);
  });

  it('is reproducible: built twice, the same bytes', () => {
    expect(sha256(join(tmp, 'again', `devstreams_${VERSION}_arm64.deb`))).toBe(sha256(deb));
  });

  it('is lintian-clean (justified overrides in packaging/debian/lintian-overrides)', async () => {
    const { stdout, stderr } = await run('lintian', ['--tag-display-limit', '0', deb], { maxBuffer: 16 << 20 }).catch((e: { stdout: string; stderr: string }) => e);
    expect(stdout.trim()).toBe('');
    expect(stderr.split('\n').filter((l) => /^[EW]: /.test(l))).toEqual([]);
  }, 180_000);
});

/** A directory that looks enough like a Pi OS arm64 root for dpkg: its database and its user files. */
function fakePiRoot(dir: string): void {
  for (const d of ['etc', 'var/lib/dpkg/info', 'var/lib/dpkg/updates', 'var/lib/dpkg/triggers', 'boot/firmware', 'lib/systemd/system']) mkdirSync(join(dir, d), { recursive: true });
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n');
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\npi:x:1000:\n');
  writeFileSync(join(dir, 'etc/shadow'), 'root:*:19000:0:99999:7:::\npi:*:19000:0:99999:7:::\n', { mode: 0o640 });
  writeFileSync(join(dir, 'etc/gshadow'), 'root:*::\npi:!::\n', { mode: 0o640 });
  writeFileSync(join(dir, 'var/lib/dpkg/available'), '');
  writeFileSync(
    join(dir, 'var/lib/dpkg/status'),
    ['dpkg', 'libc6', 'libstdc++6', 'adduser', 'passwd']
      .map((p) => `Package: ${p}\nStatus: install ok installed\nPriority: required\nSection: base\nMaintainer: Pi <pi@example.invalid>\nArchitecture: arm64\nVersion: 2.36-9\nDescription: stand-in\n`)
      .join('\n'),
  );
}

describe('scripts/pi-image-install.sh into a Pi OS root directory', () => {
  const rootfs = join(tmp, 'rootfs');
  const install = (...args: string[]) => run('bash', [join(REPO, 'scripts/pi-image-install.sh'), '--deb', deb, ...args, rootfs], { cwd: REPO });
  const gidOf = (name: string) => Number(readFileSync(join(rootfs, 'etc/group'), 'utf8').match(new RegExp(`^${name}:x:(\\d+):`, 'm'))?.[1]);

  beforeAll(async () => {
    fakePiRoot(rootfs);
    const config = join(tmp, 'image-agent.yaml');
    writeFileSync(config, 'hub:\n  connection_string_file: /run/credentials/devstreams-agent.service/connection-string\nservices:\n  ssh:\n    port: 22\n');
    await install('--config', config);
  }, 120_000);

  it('creates the system user and group in the image, not on the host', () => {
    const passwd = readFileSync(join(rootfs, 'etc/passwd'), 'utf8');
    expect(passwd).toMatch(/^devstreams:x:\d+:\d+:[^:]*:\/var\/lib\/devstreams:\/usr\/sbin\/nologin$/m);
    expect(gidOf('devstreams')).toBeGreaterThan(0);
    expect(gidOf('devstreams')).toBeLessThan(1000);
    expect(readFileSync(join(rootfs, 'etc/shadow'), 'utf8')).toMatch(/^devstreams:/m);
    expect(readFileSync('/etc/passwd', 'utf8')).not.toMatch(/^devstreams:/m);
  });

  it('installs the files with the image owner ids, the builder config included, and registers the package', () => {
    const cfg = join(rootfs, 'etc/devstreams/agent.yaml');
    expect(mode(cfg)).toBe(0o640);
    expect(statSync(cfg).uid).toBe(0);
    expect(statSync(cfg).gid).toBe(gidOf('devstreams'));
    expect(readFileSync(cfg, 'utf8')).toContain('ssh:');
    expect(mode(join(rootfs, 'etc/devstreams'))).toBe(0o750);
    expect(statSync(join(rootfs, 'etc/devstreams')).gid).toBe(gidOf('devstreams'));
    expect(mode(join(rootfs, 'usr/bin/devstreams'))).toBe(0o755);
    expect(readFileSync(join(rootfs, 'var/lib/dpkg/status'), 'utf8')).toMatch(/Package: devstreams\nStatus: install ok installed/);
  });

  it('enables the agent and the first-boot hook', () => {
    for (const unit of ['devstreams-agent.service', 'devstreams-firstboot.service']) {
      const link = join(rootfs, 'etc/systemd/system/multi-user.target.wants', unit);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(readlinkSync(link)).toBe(`/lib/systemd/system/${unit}`);
    }
  });

  it('provisions on first boot from the boot partition, with the group of the image', async () => {
    const cs = `HostName=hub.example.com;DeviceId=pi-1;SharedAccessKey=${Buffer.alloc(32, 1).toString('base64')}`;
    writeFileSync(join(rootfs, 'boot/firmware/devstreams-connection-string.txt'), `${cs}\n`);
    writeFileSync(join(rootfs, 'boot/firmware/devstreams.yaml'), `hub:\n  connection_string_file: /run/credentials/devstreams-agent.service/connection-string\nservices:\n  web:\n    port: 8080\n`);
    const etc = join(rootfs, 'etc/devstreams');
    const groupFile = join(rootfs, 'etc/group');
    // The unit's command, pointed at this root (the bundle is the same CLI as the executable).
    const { stdout } = await run(process.execPath, [BUNDLE, 'provision', '--boot-dir', join(rootfs, 'boot/firmware'), '--boot-dir', join(rootfs, 'boot'), '--config-dir', etc]);
    expect(stdout).toMatch(/^installed /);
    expect(existsSync(join(rootfs, 'boot/firmware/devstreams-connection-string.txt'))).toBe(false);
    expect(existsSync(join(rootfs, 'boot/firmware/devstreams.yaml'))).toBe(false);
    expect(readFileSync(join(etc, 'connection-string'), 'utf8').trim()).toBe(cs);
    expect(mode(join(etc, 'connection-string'))).toBe(0o600);
    expect(readFileSync(join(etc, 'agent.yaml'), 'utf8')).toContain('web:');
    // The host has no devstreams group: the installed config's group is kept.
    expect(statSync(join(etc, 'agent.yaml')).gid).toBe(Number(readFileSync(groupFile, 'utf8').match(/^devstreams:x:(\d+):/m)?.[1]));
    expect(mode(join(etc, 'agent.yaml'))).toBe(0o640);
  });

  it('reinstalls (upgrade path) without a second user or a lost config, and purges cleanly', async () => {
    await install();
    expect(readFileSync(join(rootfs, 'etc/passwd'), 'utf8').match(/^devstreams:/gm)).toHaveLength(1);
    expect(readFileSync(join(rootfs, 'etc/devstreams/agent.yaml'), 'utf8')).toContain('web:');
    await run('dpkg', ['--root', rootfs, '--force-script-chrootless', '--force-architecture', '--purge', 'devstreams']);
    expect(existsSync(join(rootfs, 'usr/bin/devstreams'))).toBe(false);
    expect(existsSync(join(rootfs, 'etc/devstreams/connection-string'))).toBe(false);
    expect(existsSync(join(rootfs, 'etc/devstreams/agent.yaml'))).toBe(false);
  }, 120_000);
});
