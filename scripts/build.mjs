// Bundles the CLI into one CommonJS file, dist/devstreams.cjs: what runs everywhere, and what the
// single executables wrap. Native addons stay external (they are loaded from disk at run time).
import { execFileSync } from 'node:child_process';
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
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

/**
 * The hub's web console for the browser (hub/console/client, xterm.js included): app.js, app.css and
 * login.js. Plain TypeScript and xterm.js, bundled and minified by esbuild: no other build tool.
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
  write: false,
};

/**
 * The console's files go into the bundle gzipped and base64-encoded (about 125 kB; ASCII, so the
 * one-byte source stays one-byte), read only inside the hub's console module: the single executables
 * and the .deb carry the console with nothing beside them. Also written to dist/console/ to look at.
 */
async function consoleAssets() {
  const out = await build(consoleOptions);
  mkdirSync('dist/console', { recursive: true });
  const files = {};
  for (const f of out.outputFiles) {
    const name = f.path.split('/').pop();
    writeFileSync(`dist/console/${name}`, f.contents);
    files[name] = gzipSync(f.contents, { level: 9 }).toString('base64');
  }
  return files;
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
  // Whitespace too (not identifiers: names stay readable in stack traces and logs): the source is
  // 3.41 -> 2.45 MB, and both the single executable's blob and V8's heap hold it. x64 executable,
  // same run, two copies each: idle RSS 78.0 -> 75.5 MB, anonymous 27.4 -> 26.0 MB. Identifiers as
  // well (with keepNames) measured worse: 80.2 MB (the __name calls grow the old generation).
  minifyWhitespace: true,
  legalComments: 'none',
  // ASCII only (non-ASCII escaped): V8 then keeps the source as a one-byte string, not a two-byte copy
  // of all of it (17 non-ASCII characters doubled 3.5 MB; issue 16).
  charset: 'ascii',
  external: ['node-pty', '@lydell/node-pty', 'bufferutil', 'utf-8-validate'],
  banner: { js: '#!/usr/bin/env node' },
  define: {
    __DEVSTREAMS_VERSION__: JSON.stringify(pkg.version),
    __DEVSTREAMS_COMMIT__: JSON.stringify(commit),
    // A string, not an object: esbuild inlines it where it is read (one function of the hub's console),
    // where an object would be built by every module's initializer in every subcommand.
    __DEVSTREAMS_CONSOLE_ASSETS__: JSON.stringify(JSON.stringify(await consoleAssets())),
  },
  logLevel: 'warning',
  plugins: [asciiComments()],
};

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  mkdirSync('dist', { recursive: true });
  await build(bundleOptions);
}
