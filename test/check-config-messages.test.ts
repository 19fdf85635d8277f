import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/exit-codes';
import { runCliToEnd } from './helpers/cli';

/** check-config in our words: file order, did-you-mean, the real cause of mis-indentation, no library text. */
describe('check-config messages', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-check-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const cs = 'HostName=hub.example:8443;DeviceId=pi;SharedAccessKey=' + Buffer.alloc(32, 1).toString('base64');

  it('reports every problem once, top to bottom, each a sentence of ours', async () => {
    const file = join(dir, 'agent.yaml');
    writeFileSync(
      file,
      [
        'hub:',
        `  connection_string: "${cs}"`,
        '  ca_file: /etc/devstreams/hub-ca.pem',
        'loglevel: debug',
        'services:',
        '  web:',
        '    port: 70000',
        '    hots: 127.0.0.1',
        '  ssh:',
        '  port: 22',
        '  sh:',
        '    pty:',
        '      command: /bin/sh',
        '      max_sessions: 0',
        'telemetry:',
        '  interval: 1s',
        '',
      ].join('\n'),
    );
    const r = await runCliToEnd(['check-config', file]);
    expect(r.code).toBe(EXIT.CONFIG);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toEqual([
      `${file}:3:3: hub.ca_file is not a known setting: did you mean hub.ca?`,
      `${file}:4:1: loglevel is not a known setting: did you mean log.level?`,
      `${file}:7:11: services.web.port must be at most 65535, not 70000`,
      `${file}:8:5: services.web.hots is not a known setting: did you mean services.web.host?`,
      `${file}:9:3: services.ssh has no settings: its port or pty must be indented under it`,
      `${file}:10:3: services.port: "port" is a setting of a service, not a service name: indent it under ssh`,
      `${file}:14:21: services.sh.pty.max_sessions must be at least 1, not 0`,
      `${file}:16:13: telemetry.interval must be off or between 10s and 1d`,
    ]);
    expect(r.stderr).not.toMatch(/Too big|Too small|expected number|Invalid input/);
    expect(r.stderr).not.toMatch(/telemetry\.interval: telemetry\.interval/);
  });

  it('a service with both port and pty, or neither, says which', async () => {
    const file = join(dir, 'shapes.yaml');
    writeFileSync(file, `hub:\n  connection_string: "${cs}"\nservices:\n  both:\n    port: 1\n    pty: { command: /bin/sh }\n  neither:\n    max_streams: 3\n`);
    const r = await runCliToEnd(['check-config', file]);
    expect(r.stderr).toMatch(/services\.both has both port and pty: a service is a TCP port or a terminal, not both/);
    expect(r.stderr).toMatch(/services\.neither needs port \(a TCP service\) or pty \(a terminal\)/);
  });
});

describe('the packaged agent config (packaging/agent.yaml)', () => {
  it('is valid and allows ssh on port 22 out of the box, and no shell', async () => {
    const { readFileSync } = await import('node:fs');
    const { parseAgentConfig, isPtyService } = await import('../agent/config');
    const text = readFileSync(join(__dirname, '../packaging/agent.yaml'), 'utf8');
    const cs = 'HostName=hub.example:8443;DeviceId=pi;SharedAccessKey=' + Buffer.alloc(32, 1).toString('base64');
    const { config, problems } = parseAgentConfig(text, 'agent.yaml', { DEVSTREAMS_DEVICE_CONNECTION_STRING: cs });
    expect(problems).toEqual([]);
    expect(config!.services.ssh).toMatchObject({ port: 22, host: '127.0.0.1' });
    expect(Object.values(config!.services).some(isPtyService)).toBe(false);
  });
});
