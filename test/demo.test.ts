import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { requireBundle } from './helpers/cli';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'devstreams-demo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `make run` is the first thing a newcomer types: it must bring up a hub and agent with a working stream. */
it('make run starts a hub and an agent and proves a stream works', async () => {
  requireBundle();
  const { stdout } = await run(process.execPath, [resolve(__dirname, '../scripts/demo.mjs')], {
    env: { ...process.env, DEMO_CHECK: '1', DEMO_DIR: dir },
    timeout: 60_000,
  });
  expect(stdout).toMatch(/self-check {5}a stream to demo-pi\/web answered: hello from the device/);
  expect(stdout).toMatch(/curl http:\/\/127\.0\.0\.1:\d+\//);
  expect(stdout).toContain('self-check passed');
  expect(stdout).toContain('shell demo-pi -- echo answered: hello from the shell');
  for (const next of ['devices --ca', 'shell --ca', '-- uname -a', 'status --config', 'proxy --ca']) expect(stdout).toContain(next);
  expect(stdout).toMatch(/https:\/\/127\.0\.0\.1:\d+\/ +# the web console/);
});
