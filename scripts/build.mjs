// Bundles the CLI into one CommonJS file, dist/devstreams.cjs: what runs everywhere, and what the
// single executables wrap. Native addons stay external (they are loaded from disk at run time).
import { execFileSync } from 'node:child_process';
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
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
/**
 * `charset: 'ascii'` escapes strings, template literals, regexps and identifiers but copies comments
 * verbatim; this rewrites what non-ASCII is left (in comments only) as `\u{...}` text, so the whole
 * bundle is ASCII and V8 keeps its source as a one-byte string.
 */
function asciiComments() {
  return {
    name: 'devstreams-ascii-comments',
    setup(b) {
      b.onEnd((result) => {
        const file = b.initialOptions.outfile;
        if (result.errors.length || b.initialOptions.write === false || !file) return;
        const text = readFileSync(file, 'utf8');
        if (/[^\x00-\x7f]/.test(text)) writeFileSync(file, text.replace(/[^\x00-\x7f]/gu, (c) => `\\u{${c.codePointAt(0).toString(16)}}`));
      });
    },
  };
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
  // ASCII only (non-ASCII escaped): V8 then keeps the source as a one-byte string, not a two-byte copy
  // of all of it (17 non-ASCII characters doubled 3.5 MB; issue 16).
  charset: 'ascii',
  external: ['node-pty', '@lydell/node-pty', 'bufferutil', 'utf-8-validate'],
  banner: { js: '#!/usr/bin/env node' },
  define: {
    __DEVSTREAMS_VERSION__: JSON.stringify(pkg.version),
    __DEVSTREAMS_COMMIT__: JSON.stringify(commit),
  },
  logLevel: 'warning',
  plugins: [asciiComments()],
};

/**
 * The hub's web console for the browser (hub/console/client, xterm.js included): dist/console/app.js,
 * app.css and login.js, which the hub reads at start (hub/console/assets.ts). Plain TypeScript and
 * xterm.js, bundled and minified by esbuild: no other build tool.
 */
export const consoleOptions = {
  entryPoints: { app: 'hub/console/client/app.ts', login: 'hub/console/client/login.ts' },
  outdir: 'dist/console',
  bundle: true,
  platform: 'browser',
  format: 'iife',
  target: ['chrome100', 'firefox100', 'safari15'],
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
};

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  mkdirSync('dist', { recursive: true });
  await Promise.all([build(bundleOptions), build(consoleOptions)]);
}
