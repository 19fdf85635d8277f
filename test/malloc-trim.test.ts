import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mallocTrim } from '../agent/malloc-trim';

/**
 * scripts/binary/malloc-trim.cc, the addon the single executables carry for the agent's idle
 * collection (agent/idle-gc.ts), built here for this machine's node and loaded for real.
 */
const dir = mkdtempSync(join(tmpdir(), 'devstreams-trim-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the malloc_trim addon', () => {
  it('builds against Node-API alone, loads, and calls glibc malloc_trim(0)', () => {
    const out = join(dir, 'malloc-trim.node');
    execFileSync('g++', ['-shared', '-fPIC', '-O2', '-Wall', '-Werror', '-std=gnu++17', '-DNAPI_VERSION=8', '-I', '/usr/include/node', 'scripts/binary/malloc-trim.cc', '-o', out]);
    const mod = { exports: {} as { trim: () => unknown } };
    process.dlopen(mod, out, osConstants.dlopen.RTLD_NOW);
    // true when pages went back, false when there were none: what it frees is measured in make bench.
    expect(typeof mod.exports.trim()).toBe('boolean');
  });

  it('is absent from builds that carry no addon (the bundle on a system node): undefined, not an error', () => {
    expect(mallocTrim()).toBeUndefined();
  });
});
