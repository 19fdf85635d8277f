import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: plain ESM script without types
import { bundleOptions } from '../scripts/build.mjs';
import { lastLine, runCli, runCliToEnd, type CliProcess } from './helpers/cli';

/**
 * Each subcommand loads only what it runs (cli/main.ts, /work/notes/cli-pattern.md). The CLI is built
 * exactly as shipped except that npm packages stay external, so each one is loaded through require()
 * and a preloaded hook records them; the real hub and agent run with it.
 */
const REPO = resolve(__dirname, '..');
const HOOK = join(REPO, 'test/helpers/record-packages.cjs');
// Inside the repo so require() finds node_modules; not dist/devstreams.cjs, which tests share.
const EXTERNAL_BUNDLE = join(REPO, 'dist/test-lazy-load/devstreams.cjs');
const HUB_ONLY = ['aedes', 'node-forge'];

describe('lazy per-subcommand loading', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-lazy-'));
  const dataDir = join(dir, 'hub');
  let hub: CliProcess;
  const packagesOf = (name: string): string[] => JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8')) as string[];
  const run = (name: string, args: string[], env: Record<string, string> = {}): CliProcess =>
    runCli(args, { NODE_OPTIONS: `--require ${HOOK}`, DEVSTREAMS_RECORD_PACKAGES: join(dir, `${name}.json`), ...env }, undefined, EXTERNAL_BUNDLE);

  beforeAll(async () => {
    await build({ ...bundleOptions, outfile: EXTERNAL_BUNDLE, packages: 'external', logLevel: 'error' });
    hub = run('hub', ['hub', '--data-dir', dataDir, '--listen', '127.0.0.1:0']);
    await hub.waitForLine(/^hub listening on /);
  });

  afterAll(async () => {
    await hub?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the agent, connected and listening, never loads the hub-only modules', async () => {
    const add = await runCliToEnd(['hub', 'add-device', 'pi-lazy', '--data-dir', dataDir]);
    expect(add.code).toBe(0);
    const config = join(dir, 'agent.yaml');
    writeFileSync(config, `hub:\n  connection_string: "${lastLine(add.stdout)}"\n  ca: ${join(dataDir, 'ca.pem')}\nservices:\n  echo:\n    port: 7\n`);
    const agent = run('agent', ['agent', '--config', config]);
    await agent.waitForLine(/listening for stream requests/);
    expect(await agent.stop()).toEqual({ code: 0, signal: null });
    const loaded = packagesOf('agent');
    expect(loaded).toEqual(expect.arrayContaining(['mqtt', 'ws', 'yaml', 'zod', 'pino']));
    for (const name of HUB_ONLY) expect(loaded).not.toContain(name);
  });

  it('the hub does load them (the recording sees what it must)', async () => {
    expect(await hub.stop()).toEqual({ code: 0, signal: null });
    expect(packagesOf('hub')).toEqual(expect.arrayContaining(HUB_ONLY));
  });

  it('the bundle is ASCII only (V8 keeps a one-byte source string, not a two-byte copy)', () => {
    expect(readFileSync(EXTERNAL_BUNDLE, 'latin1')).not.toMatch(/[^\x00-\x7f]/);
  });

  it('--version loads commander only', async () => {
    const p = run('version', ['--version']);
    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(packagesOf('version')).toEqual(['commander']);
  });
});
