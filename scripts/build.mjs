// Bundles the CLI into one CommonJS file, dist/devstreams.cjs: what runs everywhere, and what the
// single executables wrap. Native addons stay external (they are loaded from disk at run time).
import { execFileSync } from 'node:child_process';
import { readFileSync, mkdirSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
let commit = process.env.DEVSTREAMS_COMMIT;
if (!commit) {
  try {
    commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    commit = 'unknown';
  }
}
/** The esbuild options of the bundle; scripts/binary/build.mjs reuses them for the single executables. */
export const bundleOptions = {
  entryPoints: ['cli/index.ts'],
  outfile: 'dist/devstreams.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  minifySyntax: true,
  legalComments: 'none',
  external: ['node-pty', '@lydell/node-pty', 'bufferutil', 'utf-8-validate'],
  banner: { js: '#!/usr/bin/env node' },
  define: {
    __DEVSTREAMS_VERSION__: JSON.stringify(pkg.version),
    __DEVSTREAMS_COMMIT__: JSON.stringify(commit),
  },
  logLevel: 'warning',
};

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  mkdirSync('dist', { recursive: true });
  await build(bundleOptions);
}
