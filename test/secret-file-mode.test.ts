import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCliToEnd } from './helpers/cli';

/** hub.connection_string_file holds the device's key: the same mode check as hub.key (real CLI, real files). */
describe('hub.connection_string_file mode', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-secret-mode-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const cs = `HostName=hub.example:8443;DeviceId=pi-1;SharedAccessKey=${Buffer.alloc(32, 3).toString('base64')}`;

  function config(mode: number): { file: string; secret: string } {
    const secret = join(dir, `cs-${mode.toString(8)}`);
    writeFileSync(secret, `${cs}\n`, { mode });
    const file = join(dir, `agent-${mode.toString(8)}.yaml`);
    writeFileSync(file, `hub:\n  connection_string_file: ${secret}\nservices: {}\n`);
    return { file, secret };
  }

  it('a connection string file others can read stops the agent with exit 78 and the fix', async () => {
    const { file, secret } = config(0o644);
    const r = await runCliToEnd(['agent', '--config', file]);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`${file}:2:27: hub.connection_string_file: ${secret} is accessible by group or others (mode 0644); the agent refuses to start: run chmod 600 ${secret}`);
    const check = await runCliToEnd(['check-config', file]);
    expect(check.code).toBe(78);
  });

  it('0600 and 0400 (a systemd credential) are accepted', async () => {
    for (const mode of [0o600, 0o400]) {
      const r = await runCliToEnd(['check-config', config(mode).file]);
      expect(r.code, r.stderr).toBe(0);
    }
  });
});
