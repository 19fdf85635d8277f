import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../agent/agent';
import { parseAgentConfig } from '../agent/config';
import { ControlChannel } from '../agent/control-channel';
import { Backoff } from '../core/backoff';
import { HubDataDir } from '../hub/data-dir';
import { DeviceRegistry } from '../hub/device-registry';
import { createCa } from '../hub/pki';
import { HubClient, clockSkewMessage } from '../service/hub-client';
import { isDevstreamsError, parseDeviceConnectionString, parseServiceConnectionString } from '../wire';
import { startStack, testLogger, until, type Stack } from './helpers/stack';
import { roundTrip, startEchoServer } from './helpers/targets';
import { capturingLogger } from './helpers/log-capture';

describe('clear messages for network and trust failures', () => {
  let stack: Stack;
  let dir: string;
  let foreignCaFile: string;
  const channels: ControlChannel[] = [];

  beforeAll(async () => {
    stack = await startStack();
    dir = mkdtempSync(join(tmpdir(), 'devstreams-msg-'));
    foreignCaFile = join(dir, 'other-ca.pem');
    writeFileSync(foreignCaFile, createCa('some other CA').certPem);
  });
  afterAll(async () => {
    for (const c of channels) await c.stop();
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const device = (id: string) => parseDeviceConnectionString(stack.deviceConnectionString(id));

  it('service: an untrusted hub certificate names the certificate and the CA file in use', async () => {
    const { readFileSync } = await import('node:fs');
    const client = new HubClient({ service: parseServiceConnectionString(stack.serviceConnectionString), caPem: readFileSync(foreignCaFile), caFile: foreignCaFile });
    try {
      const err = await client.requestStream('pi-001', 'echo').catch((e: unknown) => e);
      expect(isDevstreamsError(err, 'ECERT_UNTRUSTED')).toBe(true);
      const msg = (err as Error).message;
      expect(msg).toContain(`the hub's certificate at ${stack.hub.host} is not trusted`);
      expect(msg).toContain(`the CA file in use is ${foreignCaFile}`);
      expect(msg).toMatch(/it presented CN=127\.0\.0\.1 \(issued by CN=devstreams hub CA [0-9a-f]+, valid .* SHA-256 [0-9A-F:]+\)/);
    } finally {
      client.close();
    }
  });

  it('agent: an untrusted hub certificate names the certificate and the CA file in use', async () => {
    const { readFileSync } = await import('node:fs');
    const ch = new ControlChannel({ device: device('pi-cert'), caPem: readFileSync(foreignCaFile), caFile: foreignCaFile, log: testLogger('control'), backoff: new Backoff({ baseMs: 50, capMs: 200 }) });
    channels.push(ch);
    ch.start();
    await until(() => /it presented CN=/.test(ch.lastError ?? ''), 'the certificate to be named');
    expect(ch.lastError).toContain(`the CA file in use is ${foreignCaFile}`);
    expect(ch.connected).toBe(false);
  });

  it('agent: a clock two hours slow is named as the cause when the hub refuses the token', async () => {
    const ch = new ControlChannel({
      device: device('pi-clock'),
      caPem: stack.caPem,
      caFile: stack.caFile,
      log: testLogger('control'),
      tokenLifetimeS: 3600,
      now: () => Date.now() - 2 * 3600_000,
      backoff: new Backoff({ baseMs: 50, capMs: 200 }),
    });
    channels.push(ch);
    ch.start();
    await until(() => /clock/.test(ch.lastError ?? ''), 'the clock to be blamed');
    expect(ch.lastError).toMatch(/^the hub refused the device's token: this machine's clock is 120 min behind the hub's .*fix the clock \(NTP\)$/);
    // the same device with a right clock gets in
    const ok = new ControlChannel({ device: device('pi-clock'), caPem: stack.caPem, log: testLogger('control') });
    channels.push(ok);
    ok.start();
    await until(() => ok.connected, 'the device with a right clock to connect');
  });

  it('service: a clock two hours slow is named when the hub refuses the token (ECLOCK_SKEW)', async () => {
    const client = new HubClient({ service: parseServiceConnectionString(stack.serviceConnectionString), caPem: stack.caPem, now: () => Date.now() - 2 * 3600_000 });
    try {
      const err = await client.requestStream('pi-001', 'echo').catch((e: unknown) => e);
      expect(isDevstreamsError(err, 'ECLOCK_SKEW')).toBe(true);
      expect((err as Error).message).toMatch(/^the hub refused the service credentials \(.*expired.*\): this machine's clock is 120 min behind the hub's/);
    } finally {
      client.close();
    }
  });

  it('service: a clock far off is named from the hub’s Date header', () => {
    const now = Date.parse('2026-01-01T12:00:00Z');
    expect(clockSkewMessage('Thu, 01 Jan 2026 12:02:00 GMT', now)).toBeUndefined();
    expect(clockSkewMessage('Thu, 01 Jan 2026 15:00:00 GMT', now)).toMatch(/clock is 180 min behind the hub's/);
    expect(clockSkewMessage('Thu, 01 Jan 2026 10:00:00 GMT', now)).toMatch(/clock is 120 min ahead of the hub's/);
    expect(clockSkewMessage(undefined, now)).toBeUndefined();
  });

  it('a host name that does not resolve says DNS', async () => {
    const service = parseServiceConnectionString(stack.serviceConnectionString.replace(/HostName=[^;]+/, 'HostName=no-such-hub.invalid'));
    const client = new HubClient({ service, caPem: stack.caPem });
    try {
      const err = await client.requestStream('pi-001', 'echo').catch((e: unknown) => e);
      expect(isDevstreamsError(err, 'EHUB_UNREACHABLE')).toBe(true);
      expect((err as Error).message).toMatch(/^cannot resolve the hub's host name in no-such-hub\.invalid \(DNS: (ENOTFOUND|EAI_AGAIN)\)$/);
    } finally {
      client.close();
    }
  });

  it('insecure: true connects without the CA and says so loudly at every connect', async () => {
    const echo = await startEchoServer();
    const { log, lines } = capturingLogger('info');
    const yaml = `hub:\n  connection_string: "${stack.deviceConnectionString('pi-insecure')}"\n  insecure: true\nservices:\n  echo:\n    port: ${echo.port}\n`;
    const { config } = parseAgentConfig(yaml, 'insecure.yaml');
    const agent = new Agent(config!, log);
    try {
      await agent.start();
      await until(() => agent.connected, 'the insecure agent to connect');
      const c = await stack.connect('pi-insecure', 'echo');
      expect((await roundTrip(c.address.port, Buffer.from('hi'))).toString()).toBe('hi');
      const loud = lines.filter((l) => l.level === 40 && /INSECURE: TLS verification is OFF/.test(String(l.msg)));
      expect(loud.length).toBeGreaterThanOrEqual(2); // the control connection and the stream
    } finally {
      await agent.stop();
      await echo.close();
    }
    // Without insecure and without the CA, the same agent is refused: verification is on by default.
    const strict = parseAgentConfig(yaml.replace('  insecure: true\n', ''), 'strict.yaml').config!;
    expect(strict.hub.insecure).toBe(false);
    const ch = new ControlChannel({ device: strict.device, log: testLogger('control'), backoff: new Backoff({ baseMs: 50, capMs: 200 }) });
    channels.push(ch);
    ch.start();
    await until(() => /not trusted/.test(ch.lastError ?? ''), 'the untrusted hub to be refused');
    expect(ch.lastError).toContain('no CA file is configured, so only the system CAs are trusted');
    expect(new DeviceRegistry(new HubDataDir(stack.dir)).get('pi-insecure')).toBeDefined();
  });
});
