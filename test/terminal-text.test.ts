import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusSnapshot } from '../agent/status';
import { printableAscii, terminalSafe } from '../core/terminal-text';
import { DeviceRegistry } from '../hub/device-registry';
import { HubDataDir } from '../hub/data-dir';
import { createSasToken, deviceResourceUri, formatServiceConnectionString, mqttUsername, telemetryTopic } from '../wire';
import { runCliToEnd, startHubProcess, type CliProcess } from './helpers/cli';
import { until } from './helpers/stack';

/** What a hostile device would like to reach an operator's terminal: retitle, clear, clipboard write, CSI in C1, bidi override. */
const HOSTILE = '1.0\u001b]0;pwned\u0007\u001b[2J\u001b]52;c;ZWNobyBoaQ==\u0007\u009b31m\u202egnp.exe\r\n';
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e]/;

describe('terminalSafe', () => {
  it('replaces what a terminal acts on and keeps printable Unicode', () => {
    expect(terminalSafe(HOSTILE)).toBe('1.0?]0;pwned??[2J?]52;c;ZWNobyBoaQ==??31m?gnp.exe??');
    expect(terminalSafe('Grüße, 温度 42°C')).toBe('Grüße, 温度 42°C');
    expect(terminalSafe('x'.repeat(10), 4)).toBe('xxxx…');
  });
});

describe('printableAscii', () => {
  it('keeps printable ASCII only, cut to the length given', () => {
    expect(printableAscii(HOSTILE, 500)).toBe('1.0?]0;pwned??[2J?]52;c;ZWNobyBoaQ==??31m?gnp.exe??');
    expect(printableAscii('Grüße\r\nx', 100)).toBe('Gr??e??x');
    expect(printableAscii('a'.repeat(10), 4)).toBe('aaaa');
  });
});

describe('device-supplied text in CLI output (real hub process, real CLI)', () => {
  let dir: string;
  let hub: CliProcess & { port: number };
  let env: Record<string, string>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'devstreams-terminal-'));
    hub = await startHubProcess(dir);
    const secrets = new HubDataDir(dir).secrets();
    env = {
      DEVSTREAMS_CONNECTION_STRING: formatServiceConnectionString({ hostName: `127.0.0.1:${hub.port}`, sharedAccessKeyName: secrets.service_policy_name, sharedAccessKey: secrets.service_policy_key }),
      NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem'),
    };
  });

  afterAll(async () => {
    await hub?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('`devstreams devices` prints a hostile telemetry version without its escape sequences', async () => {
    const host = `127.0.0.1:${hub.port}`;
    const key = new DeviceRegistry(new HubDataDir(dir)).add('pi-evil').primary_key;
    const device = await connectAsync(`wss://${host}/$iothub/websocket`, {
      clientId: 'pi-evil',
      username: mqttUsername(host, 'pi-evil'),
      password: createSasToken({ resource: deviceResourceUri(host, 'pi-evil'), key, expiresAt: Math.floor(Date.now() / 1000) + 600 }),
      ca: readFileSync(join(dir, 'ca.pem')),
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    try {
      await device.publishAsync(telemetryTopic('pi-evil'), JSON.stringify({ version: HOSTILE, cpu: { load_pct: 5 } }));
      let out = '';
      await until(async () => {
        const r = await runCliToEnd(['devices', '--ca', join(dir, 'ca.pem')], env);
        out = r.stdout;
        return r.code === 0 && out.includes('pi-evil') && out.includes('pwned');
      }, 'the health to show', 30_000);
      expect(out).not.toMatch(UNSAFE);
      expect(out).toContain('1.0?]0;pwned??[2J');
    } finally {
      await device.endAsync();
    }
  }, 60_000);

  it('`devstreams status` prints hostile refusal reasons and errors without their escape sequences', async () => {
    const file = join(dir, 'status.json');
    const now = new Date().toISOString();
    const snapshot: StatusSnapshot = {
      version: '1.0.0',
      pid: process.pid,
      device: 'pi-evil',
      hub: 'hub.example',
      started_at: now,
      updated_at: now,
      connection: { state: 'disconnected', since: now, reconnects: 1, last_error: HOSTILE },
      streams: { active: [{ request_id: HOSTILE, service: 'ssh', target: '127.0.0.1:22', since: now }], total: 1, refused_total: 1 },
      bytes: { to_target: 0, from_target: 0 },
      recent_refusals: [{ at: now, request_id: '7', service: 'ssh', reason: HOSTILE }],
    };
    writeFileSync(file, JSON.stringify(snapshot));
    const r = await runCliToEnd(['status', '--file', file]);
    expect(r.stdout).toContain('pwned');
    expect(r.stdout).not.toMatch(UNSAFE);
  });
});
