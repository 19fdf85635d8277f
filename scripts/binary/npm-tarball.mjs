// Pinned npm tarballs (Node builds, node-pty sources), fetched once and checked against their registry
// integrity: scripts/binary/build.mjs and the packaging tests share this.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const CACHE = resolve(dirname(fileURLToPath(import.meta.url)), '../../node_modules/.cache/devstreams-binary');

/** An npm tarball from the cache (npm's own cache first, so a second run needs no network), integrity-checked. */
export function fetchTarball({ spec, integrity }) {
  const [name, version] = spec.split(/@(?=[^@]+$)/);
  const file = join(CACHE, `${name.replace(/^@/, '').replace('/', '-')}-${version}.tgz`);
  if (!existsSync(file)) {
    // Into a private directory, then renamed: `make -j binary` runs one of us per target.
    mkdirSync(CACHE, { recursive: true });
    const tmp = mkdtempSync(join(CACHE, '.pack-'));
    try {
      execFileSync('npm', ['pack', spec, '--pack-destination', tmp, '--prefer-offline', '--silent', '--ignore-scripts'], { stdio: ['ignore', 'pipe', 'inherit'] });
      renameSync(join(tmp, basename(file)), file);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  const [algo, want] = integrity.split('-');
  const got = createHash(algo).update(readFileSync(file)).digest('base64');
  if (got !== want) throw new Error(`${file}: integrity mismatch (want ${integrity}, got ${algo}-${got}); delete it and retry`);
  return file;
}

