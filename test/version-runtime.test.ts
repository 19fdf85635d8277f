import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { NODE_LINE_END_OF_LIFE, nodeLineEndOfLife } from '../cli/node-lines';
import { BUNDLE, requireBundle } from './helpers/cli';

/**
 * `devstreams --version` on a node no distribution patches (this machine's: a tarball or a vendor's
 * package such as NodeSource's) states upstream's end of life for its line. The distribution case
 * (Debian's nodejs, Debian's support) and the embedded case (with its age) run under qemu-arm and in
 * the executables: test/packaging-armhf.test.ts, test/packaging-binary.test.ts.
 */
describe('--version on a node from upstream', () => {
  it("names the node binary and its line's end of life", () => {
    requireBundle();
    const out = execFileSync(process.execPath, [BUNDLE, '--version'], { encoding: 'utf8' });
    const m = out.match(/^devstreams \S+ \(commit \S+\) node (v[\d.]+) linux-\w+ \((.*)\)\n$/);
    expect(m, out).not.toBeNull();
    expect(m![1]).toBe(process.version);
    const runtime = m![2]!;
    expect(runtime.startsWith(process.execPath)).toBe(true);
    if (/security support from /.test(runtime)) return; // a distribution's own nodejs: its support, not upstream's
    const end = nodeLineEndOfLife(process.version);
    if (!end) {
      expect(runtime).not.toContain('end of life'); // a line the table does not date is not dated
      return;
    }
    const past = Date.now() >= Date.parse(`${end}T00:00:00Z`);
    expect(runtime).toMatch(new RegExp(`; ${past ? `end of life since ${end}, no security fixes` : `end of life ${end}`}$`));
  });

  it('dates the release lines by major version, and no others', () => {
    expect(nodeLineEndOfLife('v18.20.4')).toBe('2025-04-30');
    expect(nodeLineEndOfLife('v20.11.0')).toBe('2026-04-30');
    expect(nodeLineEndOfLife('v24.21.0')).toBe(NODE_LINE_END_OF_LIFE[24]);
    expect(nodeLineEndOfLife('v99.0.0')).toBeUndefined();
    expect(nodeLineEndOfLife('garbage')).toBeUndefined();
  });
});
