import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../../core/atomic-file';
import { DevstreamsError } from '../../wire';

/**
 * How a single executable (scripts/binary/build.mjs) loads the node-pty addon it carries.
 *
 * The SEA's `require` loads built-in modules only, and a native addon cannot be loaded from memory:
 * the build embeds `pty.node`'s bytes in the bundle (base64, through the define below) and replaces
 * @lydell/node-pty's `requireBinary` with `loadEmbeddedPtyAddon`. At run time the bytes are written
 * once to a content-addressed file (`pty-<sha256>.node`) in a directory that allows execution, then
 * `process.dlopen`ed. Nothing else changes: agent/pty/load-pty.ts imports @lydell/node-pty as usual.
 *
 * The directory is, in order: DEVSTREAMS_NATIVE_DIR; `native/` under systemd's STATE_DIRECTORY (a
 * hardened unit with ProtectSystem=strict/ProtectHome leaves that writable, and executable unless
 * the unit says NoExecPaths); a per-user directory under the temp directory.
 */
declare const __DEVSTREAMS_PTY_ADDON__: string | undefined;

export const NATIVE_DIR_ENV = 'DEVSTREAMS_NATIVE_DIR';

export function nativeDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env[NATIVE_DIR_ENV]) return env[NATIVE_DIR_ENV];
  // systemd sets STATE_DIRECTORY to a colon-separated list when the unit has StateDirectory=.
  const state = env.STATE_DIRECTORY?.split(':')[0];
  if (state) return join(state, 'native');
  return join(tmpdir(), `devstreams-native-${process.getuid?.() ?? 'user'}`);
}

function unavailable(message: string, cause?: unknown): DevstreamsError {
  return new DevstreamsError('EPTY_UNAVAILABLE', message, cause === undefined ? undefined : { cause });
}

/**
 * Refuses a directory another user could write into: they could swap the file between our write and
 * the dlopen. Owned by us or by root, and not writable by group or others.
 */
function checkDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw unavailable(`${dir} is not a directory (set ${NATIVE_DIR_ENV} to one that allows execution)`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid && st.uid !== 0) throw unavailable(`${dir} belongs to another user (uid ${st.uid}); set ${NATIVE_DIR_ENV}`);
  if ((st.mode & 0o022) !== 0) throw unavailable(`${dir} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); set ${NATIVE_DIR_ENV}`);
}

/** Writes `bytes` to `dir/<name>-<sha256 prefix>.node` unless an identical file is there; returns the path. */
export function materializeAddon(bytes: Buffer, dir: string, name = 'pty'): string {
  const digest = createHash('sha256').update(bytes).digest('hex');
  const file = join(dir, `${name}-${digest.slice(0, 32)}.node`);
  checkDir(dir);
  try {
    if (createHash('sha256').update(readFileSync(file)).digest('hex') === digest) return file;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw unavailable(`cannot read ${file}: ${(err as Error).message}`, err);
  }
  // Written aside and renamed, so a concurrent start or a crash never leaves a half-written addon in place.
  try {
    writeFileAtomicSync(file, bytes, 0o500);
  } catch (err) {
    throw unavailable(`cannot write the PTY addon to ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (set ${NATIVE_DIR_ENV} to a writable directory that allows execution)`, err);
  }
  return file;
}

/** dlopens an addon file; a `noexec` mount shows up here as "failed to map segment". */
export function dlopenAddon(file: string): unknown {
  const mod = { exports: {} as unknown };
  try {
    process.dlopen(mod, file, osConstants.dlopen.RTLD_NOW);
  } catch (err) {
    throw unavailable(`cannot load ${file}: ${(err as Error).message.split('\n')[0]} (is the directory mounted noexec? set ${NATIVE_DIR_ENV})`, err);
  }
  return mod.exports;
}

let cached: unknown;

/** Stands in for @lydell/node-pty's `requireBinary(file)` inside a single executable. */
export function loadEmbeddedPtyAddon(file: string): unknown {
  if (file !== 'pty.node') throw unavailable(`this executable carries pty.node only, not ${file}`);
  if (cached) return cached;
  if (typeof __DEVSTREAMS_PTY_ADDON__ !== 'string') throw unavailable('this build carries no PTY addon');
  cached = dlopenAddon(materializeAddon(Buffer.from(__DEVSTREAMS_PTY_ADDON__, 'base64'), nativeDir()));
  return cached;
}
