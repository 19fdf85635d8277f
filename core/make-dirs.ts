import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * `mkdir -p` that reports the real cause. Node's `mkdirSync(p, { recursive: true })` says ENOENT when
 * the file system is read-only (it retries the parent and keeps the wrong error); this one creates
 * one level at a time, so a read-only file system is EROFS and a forbidden one EACCES.
 */
export function makeDirsSync(dir: string, mode = 0o755): void {
  try {
    mkdirSync(dir, { mode });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    if (code !== 'ENOENT' || dirname(dir) === dir) throw err;
    makeDirsSync(dirname(dir), mode);
    mkdirSync(dir, { mode });
  }
}
