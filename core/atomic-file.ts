import { closeSync, constants, fchownSync, fsyncSync, openSync, renameSync, rmSync, writeSync, fchmodSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Replaces `path` with `data` so that a reader sees the old file or the new one, never half of
 * either, and a crash or a full disk leaves the old one in place: a temp file in the same directory
 * (same file system, so the rename is atomic), created exclusively with its mode set on the
 * descriptor, written and fsynced, then renamed over `path`; the directory is fsynced so the rename
 * itself survives a power cut. On any failure the temp file is removed and the error rethrown.
 * The temp file is opened O_EXCL|O_NOFOLLOW under an unpredictable name, so a link planted in a
 * directory others can write is never followed; the rename replaces a link at `path`, never its target.
 * `durable: false` skips the fsyncs (a status file rewritten every few seconds, on flash). `owner`
 * sets the new file's owner before it takes the name (root installing a file for a group).
 */
export function writeFileAtomicSync(path: string, data: string | Buffer, mode: number, opts: { durable?: boolean; owner?: { uid: number; gid: number } } = {}): void {
  const durable = opts.durable ?? true;
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
    fchmodSync(fd, mode);
    if (opts.owner) fchownSync(fd, opts.owner.uid, opts.owner.gid);
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    if (durable) fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // already failing: the first error is the one to report
      }
    }
    rmSync(tmp, { force: true });
    throw err;
  }
  if (durable) syncDirectory(dir);
}

/** Best effort: some file systems (vfat, and some platforms) refuse fsync on a directory. */
export function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // the data is written and renamed; only its durability across a power cut is less certain
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
