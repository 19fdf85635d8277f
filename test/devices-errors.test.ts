import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlChannel } from '../agent/control-channel';
import { Backoff } from '../core/backoff';
import { DeviceRegistry, HubDataDir } from '../hub/data-dir';
import { Hub } from '../hub/hub';
import { CERT_BACKDATE_MS, createCa, issueCertificate } from '../hub/pki';
import { formatDeviceConnectionString, formatServiceConnectionString, isDevstreamsError, parseDeviceConnectionString, parseServiceConnectionString } from '../wire';
import { HubClient } from '../service/hub-client';
import { freePort } from './helpers/free-port';
import { runCliToEnd } from './helpers/cli';
import { startStack, testLogger, until, type Stack } from './helpers/stack';

const DAY_MS = 24 * 3600_000;

/** `devstreams devices` when the network or TLS fails: one readable line each, never `[object Promise]`. */
describe('devices: network and TLS failures read as sentences', () => {
  let stack: Stack;
  let dir: string;
  let futureHub: Hub;
  let futureDir: string;
  let foreignCaFile: string;

  beforeAll(async () => {
    stack = await startStack();
    dir = mkdtempSync(join(tmpdir(), 'devstreams-devices-'));
    foreignCaFile = join(dir, 'other-ca.pem');
    writeFileSync(foreignCaFile, createCa('some other CA').certPem);
    // A hub whose certificates start tomorrow: what a device (or a laptop) with a clock a day behind sees.
    futureDir = join(dir, 'future-hub');
    const data = new HubDataDir(futureDir);
    const tomorrow = new Date(Date.now() + DAY_MS);
    const ca = createCa('future CA', { validFrom: tomorrow });
    const server = issueCertificate(ca, { commonName: '127.0.0.1', altNames: ['127.0.0.1'], usage: 'server', validFrom: tomorrow });
    mkdirSync(futureDir, { mode: 0o700 });
    writeFileSync(data.path('ca.pem'), ca.certPem);
    writeFileSync(data.path('ca-key.pem'), ca.keyPem, { mode: 0o600 });
    writeFileSync(data.path('server.pem'), server.certPem);
    writeFileSync(data.path('server-key.pem'), server.keyPem, { mode: 0o600 });
    futureHub = new Hub({ dataDir: futureDir, listen: { host: '127.0.0.1', port: 0 }, log: testLogger('hub') });
    await futureHub.start();
  });
  afterAll(async () => {
    await futureHub?.stop();
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const env = (hostName: string) => ({ DEVSTREAMS_CONNECTION_STRING: formatServiceConnectionString({ hostName, sharedAccessKeyName: 'service', sharedAccessKey: Buffer.alloc(32, 1).toString('base64') }) });

  function expectOneReadableLine(stderr: string): void {
    expect(stderr).not.toContain('[object Promise]');
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(stderr.trim().split('\n')).toHaveLength(1);
  }

  it('the hub is down: "cannot reach the hub at HOST:PORT: connection refused"', async () => {
    const port = await freePort();
    const r = await runCliToEnd(['devices', '--ca', stack.caFile], env(`127.0.0.1:${port}`));
    expectOneReadableLine(r.stderr);
    expect(r.stderr.trim()).toBe(`devstreams: cannot reach the hub at 127.0.0.1:${port}: connection refused`);
    expect(r.code).not.toBe(0);
  });

  it('an untrusted CA: names the certificate the hub presented and the CA file in use', async () => {
    const r = await runCliToEnd(['devices', '--ca', foreignCaFile], { DEVSTREAMS_CONNECTION_STRING: stack.serviceConnectionString });
    expectOneReadableLine(r.stderr);
    expect(r.stderr).toContain(`devstreams: the hub's certificate at ${stack.hub.host} is not trusted`);
    expect(r.stderr).toContain(`the CA file in use is ${foreignCaFile}`);
    expect(r.stderr).toMatch(/it presented CN=127\.0\.0\.1 \(issued by CN=devstreams hub CA/);
    expect(r.code).not.toBe(0);
  });

  it('no --ca: says only the system CAs are trusted', async () => {
    const r = await runCliToEnd(['devices'], { DEVSTREAMS_CONNECTION_STRING: stack.serviceConnectionString });
    expectOneReadableLine(r.stderr);
    expect(r.stderr).toContain('no CA file is configured, so only the system CAs are trusted');
  });

  it('a clock behind the certificates: "this machine\'s clock is behind"', async () => {
    const r = await runCliToEnd(['devices', '--ca', join(futureDir, 'ca.pem')], env(futureHub.host));
    expectOneReadableLine(r.stderr);
    expect(r.stderr).toMatch(new RegExp(`^devstreams: this machine's clock is behind: it says \\S+Z, before the hub's certificate at ${futureHub.host.replace(/\./g, '\\.')} became valid \\(CERT_NOT_YET_VALID\\); fix the clock`));
    expect(r.code).not.toBe(0);
  });

  it("a clock two hours slow signs tokens the hub takes for expired: devices names the clock (ECLOCK_SKEW)", async () => {
    const client = new HubClient({ service: parseServiceConnectionString(stack.serviceConnectionString), caPem: stack.caPem, now: () => Date.now() - 2 * 3600_000 });
    try {
      const err = await client.listDevices().catch((e: unknown) => e);
      expect(isDevstreamsError(err, 'ECLOCK_SKEW')).toBe(true);
      expect((err as Error).message).toMatch(/^the hub refused the service credentials \(.*\): this machine's clock is 120 min behind the hub's/);
    } finally {
      client.close();
    }
  });

  it('an agent with a clock behind: "this device\'s clock is behind: …"', async () => {
    const id = 'pi-late';
    const key = new DeviceRegistry(new HubDataDir(futureDir)).add(id).primary_key;
    const ch = new ControlChannel({
      device: parseDeviceConnectionString(formatDeviceConnectionString({ hostName: futureHub.host, deviceId: id, sharedAccessKey: key })),
      caPem: readFileSync(join(futureDir, 'ca.pem')),
      caFile: join(futureDir, 'ca.pem'),
      log: testLogger('control'),
      backoff: new Backoff({ baseMs: 50, capMs: 200 }),
    });
    try {
      ch.start();
      await until(() => /clock is behind/.test(ch.lastError ?? ''), "the device's clock to be blamed");
      expect(ch.lastError).toMatch(/^this device's clock is behind: it says .*CERT_NOT_YET_VALID.*fix the clock/);
      expect(ch.connected).toBe(false);
    } finally {
      await ch.stop();
    }
  });

  it("the hub's own certificates are valid from days before they were made", () => {
    for (const name of ['ca.pem', 'server.pem']) {
      const cert = new X509Certificate(readFileSync(join(stack.dir, name)));
      const backdatedMs = Date.now() - Date.parse(cert.validFrom);
      expect(backdatedMs).toBeGreaterThan(CERT_BACKDATE_MS - DAY_MS);
      expect(backdatedMs).toBeGreaterThan(7 * DAY_MS);
    }
  });
});
