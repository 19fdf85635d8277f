import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';

/** Set by scripts/build.mjs: JSON of each console file gzipped, base64. Running from source: read from disk. */
declare const __DEVSTREAMS_CONSOLE_ASSETS__: string | undefined;

/**
 * The console's files: the browser code and styles that `scripts/build.mjs` bundles with esbuild
 * (xterm.js included, nothing from a CDN) and embeds in dist/devstreams.cjs, and the two HTML pages,
 * written here. Decoded once, when the hub starts; only the `hub` subcommand does.
 */
export const ASSET_FILES = {
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'login.js': 'text/javascript; charset=utf-8',
} as const;
export type AssetName = keyof typeof ASSET_FILES;
/** What the sign-in page needs: reachable without a session. */
export const PUBLIC_ASSETS: ReadonlySet<string> = new Set(['login.js', 'app.css']);

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  // xterm.js writes its theme into a <style> element it creates.
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export interface ConsoleAssets {
  /** Each file as it is and gzipped (xterm.js is 350 kB, 90 kB gzipped: it matters on a phone). */
  files: Map<string, { body: Buffer; gzip: Buffer; type: string }>;
  loginPage: string;
  appPage: string;
}

/** Asset URLs carry a digest of the file, so a browser may keep them for a day and still never runs an old one after an upgrade. */
function assetUrl(files: ConsoleAssets['files'], name: string): string {
  const f = files.get(name);
  return `/console/assets/${name}?v=${f ? createHash('sha256').update(f.body).digest('base64url').slice(0, 12) : '0'}`;
}

function page(files: ConsoleAssets['files'], title: string, body: string, script: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<link rel="stylesheet" href="${assetUrl(files, 'app.css')}">
<script src="${assetUrl(files, script)}" defer></script>
</head>
<body>
${body}
</body>
</html>
`;
}

const LOGIN_BODY = `<main class="login">
<h1>devstreams hub</h1>
<form id="login" autocomplete="on">
<label>Operator <input name="operator" autocomplete="username" value="service" required></label>
<label>Key <input name="key" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
<p id="login-error" class="error" role="alert"></p>
</form>
</main>`;

const APP_BODY = `<header class="top">
<strong>devstreams hub</strong>
<nav><a href="#/devices" data-nav="devices">Devices</a> <a href="#/streams" data-nav="streams">Streams</a></nav>
<span class="who"><span id="operator"></span> <button id="signout" type="button">Sign out</button></span>
</header>
<div id="tabs" class="tabs"></div>
<main id="view"></main>`;

/**
 * The files embedded in the bundle, or (running from source, or `dir` given) read from `dir`
 * (dist/console); throws with the path when they were not built.
 */
export function loadAssets(dir?: string): ConsoleAssets {
  const embedded = dir === undefined && typeof __DEVSTREAMS_CONSOLE_ASSETS__ === 'string' ? (JSON.parse(__DEVSTREAMS_CONSOLE_ASSETS__) as Record<string, string>) : undefined;
  const files = new Map<string, { body: Buffer; gzip: Buffer; type: string }>();
  for (const [name, type] of Object.entries(ASSET_FILES)) {
    const packed = embedded?.[name];
    if (packed !== undefined) {
      const gzip = Buffer.from(packed, 'base64');
      files.set(name, { body: gunzipSync(gzip), gzip, type });
      continue;
    }
    const body = readFileSync(join(dir ?? join(__dirname, 'console'), name));
    files.set(name, { body, gzip: gzipSync(body), type });
  }
  return { files, loginPage: page(files, 'Sign in · devstreams hub', LOGIN_BODY, 'login.js'), appPage: page(files, 'devstreams hub', APP_BODY, 'app.js') };
}
