import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * agent/v8-tiering.ts for real: a node process calls leaveOutTurbofan() as the agent does, makes a
 * function hot, and asks V8 (natives syntax) whether TurboFan compiled it. Optimization runs on the
 * main thread (--no-concurrent-recompilation), so a hot function is TurboFan's by the time it is asked.
 */
const TURBOFANNED = 1 << 6; // V8's OptimizationStatus::kTurboFanned

const dir = mkdtempSync(join(tmpdir(), 'devstreams-tiering-'));
const script = join(dir, 'probe.cjs');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(async () => {
  await build({ entryPoints: ['agent/v8-tiering.ts'], outfile: join(dir, 'v8-tiering.cjs'), bundle: true, platform: 'node', format: 'cjs', logLevel: 'warning' });
  writeFileSync(
    script,
    `const { leaveOutTurbofan } = require('./v8-tiering.cjs');
const set = leaveOutTurbofan(process.env, process.env.PROBE_NODE_VERSION);
function hot(n) { let s = 0; for (let i = 0; i < n; i++) s += i % 7; return s; }
for (let k = 0; k < 5000; k++) hot(2000);
process.stdout.write(JSON.stringify({ set, status: %GetOptimizationStatus(hot) }));
`,
  );
});

function probe(env: Record<string, string>): { set: boolean; status: number } {
  const out = execFileSync(process.execPath, ['--allow-natives-syntax', '--no-concurrent-recompilation', script], {
    env: { PATH: process.env.PATH, ...env },
    encoding: 'utf8',
  });
  return JSON.parse(out) as { set: boolean; status: number };
}

describe("the agent's V8 tiering (agent/v8-tiering.ts)", () => {
  it('on Node 22 and later, a hot function is not compiled by TurboFan', () => {
    const r = probe({ PROBE_NODE_VERSION: '24.21.0' });
    expect(r.set).toBe(true);
    expect(r.status & TURBOFANNED).toBe(0);
  });

  it('DEVSTREAMS_AGENT_TURBOFAN=1 keeps TurboFan: the same hot function is TurboFan\'s', () => {
    const r = probe({ PROBE_NODE_VERSION: '24.21.0', DEVSTREAMS_AGENT_TURBOFAN: '1' });
    expect(r.set).toBe(false);
    expect(r.status & TURBOFANNED).toBe(TURBOFANNED);
  });

  it('before Node 22 (no Maglev by default) TurboFan stays', () => {
    const r = probe({ PROBE_NODE_VERSION: '20.20.2' });
    expect(r.set).toBe(false);
    expect(r.status & TURBOFANNED).toBe(TURBOFANNED);
  });
});
