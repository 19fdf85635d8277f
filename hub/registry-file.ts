import { EventEmitter } from 'node:events';
import { constants, copyFileSync, readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { writeFileAtomicSync } from '../core/atomic-file';
import { formatFileProblem, type FileProblem } from '../core/file-problem';
import { lineAndColumn, parseJsonLocated } from '../core/json-location';
import type { Logger } from '../core/log';
import { DevstreamsError } from '../wire';

/**
 * A registry file of the hub (devices.json, operators.json): JSON that people may edit by hand and
 * that `devstreams hub …` commands rewrite while the hub runs. The hub re-reads it when it changes
 * (a directory watch, a poll behind it, and a cheap stat on every lookup), so changes take effect at
 * once. A file that does not parse, or whose content is not a registry, never stops the hub: it keeps
 * the last good registry, logs the problem once as `file:line:col: message` and keeps serving until
 * the file is good again. The tools that write it refuse to write over a broken file unless forced.
 */
export const REGISTRY_POLL_INTERVAL_MS = 1000;

/** A JSON object: not null, not an array. */
export const isJsonObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

const OBJECT_NAMES = new Set([...Object.getOwnPropertyNames(Object.prototype), 'prototype']);

/** Names that mean something to JavaScript objects (`__proto__`, `constructor`, …): never a registry key. */
export function isObjectName(name: string): boolean {
  return OBJECT_NAMES.has(name);
}

/** A registry's entries as JSON: a null-prototype object, so `__proto__` as a key would be data, not a prototype. */
export function entriesToJson<V>(entries: Map<string, V>): Record<string, V> {
  const out = Object.create(null) as Record<string, V>;
  for (const [key, value] of entries) out[key] = value;
  return out;
}

/** The keys of two registries, in the stable order their changes are announced in. */
export function keysOfBoth(prev: Map<string, unknown>, next: Map<string, unknown>): string[] {
  return [...new Set([...prev.keys(), ...next.keys()])].sort();
}

/** Thrown by a decoder for content that parses but is not a registry; `key` is located in the text. */
export class RegistryShapeError extends Error {
  constructor(
    message: string,
    readonly key?: string,
  ) {
    super(message);
  }
}

export interface RegistryFileOptions<T> {
  path: string;
  mode: number;
  /** Turns parsed JSON into the registry; throws RegistryShapeError for anything else. */
  decode: (raw: unknown) => T;
  encode: (value: T) => unknown;
  /** What an absent file means. */
  empty: () => T;
  log?: Logger;
  /** Called after the registry in memory changed (re-read or written here), never for the first load. */
  onChange?: (prev: T, next: T) => void;
}

type Read<T> = { value: T } | { problem: FileProblem };

/** Identity of what is on disk now: a rename gives a new inode, an edit in place a new size or mtime. */
function stampOf(path: string): string {
  try {
    const st = statSync(path, { throwIfNoEntry: false });
    return st ? `${st.ino}:${st.size}:${st.mtimeMs}` : 'absent';
  } catch (err) {
    // EACCES on the directory, say: read() reports it (once per kind), the last good registry stays.
    return `error:${(err as NodeJS.ErrnoException).code ?? 'unknown'}`;
  }
}

export class RegistryFile<T> {
  private value: T;
  private stamp = '';
  private problem?: FileProblem;
  private seenOnDisk = false;
  private watcher?: FSWatcher;
  private pollTimer?: NodeJS.Timeout;

  constructor(private readonly opts: RegistryFileOptions<T>) {
    this.value = opts.empty();
  }

  get path(): string {
    return this.opts.path;
  }

  /**
   * First load. Throws ECONFIG (`file:line:col: …`) when the file is broken: with no last good
   * registry to fall back on, a starting hub must not come up serving an empty one.
   */
  load(): T {
    this.stamp = stampOf(this.opts.path);
    const read = this.read();
    if ('problem' in read) throw new DevstreamsError('ECONFIG', formatFileProblem(read.problem));
    this.value = read.value;
    return this.value;
  }

  /** The registry as of now (re-read when the file changed; the last good one while it is broken). */
  current(): T {
    this.refresh();
    return this.value;
  }

  /** Why the file on disk is not used, or undefined when it is. */
  get brokenBy(): FileProblem | undefined {
    this.refresh();
    return this.problem;
  }

  refresh(): void {
    const stamp = stampOf(this.opts.path);
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    // A file that was there and vanished (deleted by mistake, a restore in progress) is a problem,
    // not an empty registry: emptying it would drop every device at once.
    const read: Read<T> = stamp === 'absent' && this.seenOnDisk ? { problem: { file: this.opts.path, line: 1, col: 1, message: 'the file is gone' } } : this.read();
    if ('problem' in read) {
      this.problem = read.problem;
      this.opts.log?.error(
        { file: read.problem.file, line: read.problem.line, col: read.problem.col },
        `${formatFileProblem(read.problem)}; keeping the last good ${basename(this.opts.path)} and serving with it until the file is fixed`,
      );
      return;
    }
    if (this.problem) this.opts.log?.info({ file: this.opts.path }, `${basename(this.opts.path)} is good again: using it`);
    this.problem = undefined;
    this.replace(read.value);
  }

  /**
   * For the tools that change the file: the registry as on disk now. A broken file is refused
   * (ECONFIG naming file:line:col) unless `force`, which copies it aside as `FILE.broken-TIME` (kept
   * for the person who fixes it) and starts from an empty registry (the write then replaces it).
   */
  readForWrite(force = false): T {
    const read = this.read();
    if ('value' in read) return read.value;
    if (!force) {
      throw new DevstreamsError(
        'ECONFIG',
        `${formatFileProblem(read.problem)}; not writing over a broken ${basename(this.opts.path)}: fix it by hand, or add --force to set it aside and start a new one (its entries are then lost from the registry)`,
      );
    }
    const aside = `${this.opts.path}.broken-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    // A copy, not a rename: the file stays in place until the new one replaces it, so a running hub
    // never sees it missing.
    copyFileSync(this.opts.path, aside, constants.COPYFILE_EXCL);
    process.stderr.write(`devstreams: ${formatFileProblem(read.problem)}; --force: set it aside as ${aside} and started a new ${basename(this.opts.path)}\n`);
    return this.opts.empty();
  }

  /** Writes atomically (temp file, fsync, rename) and makes it the registry in memory. */
  write(value: T): void {
    writeFileAtomicSync(this.opts.path, `${JSON.stringify(this.opts.encode(value), null, 2)}\n`, this.opts.mode);
    this.stamp = stampOf(this.opts.path);
    this.problem = undefined;
    this.replace(value);
  }

  /** Running hub: notices changes at once (directory watch) or within the poll interval. */
  watch(): void {
    if (this.pollTimer) return;
    this.pollTimer = setInterval(() => this.refreshQuietly(), REGISTRY_POLL_INTERVAL_MS);
    this.pollTimer.unref();
    try {
      const name = basename(this.opts.path);
      this.watcher = watch(dirname(this.opts.path), { persistent: false }, (_event, file) => {
        if (file === null || file === name) this.refreshQuietly();
      });
      this.watcher.on('error', () => this.watcher?.close());
    } catch {
      // Some file systems cannot be watched: the poll still sees every change.
    }
  }

  stop(): void {
    clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
  }

  private refreshQuietly(): void {
    try {
      this.refresh();
    } catch (err) {
      this.opts.log?.warn({ err, file: this.opts.path }, 'cannot re-read registry file');
    }
  }

  private replace(next: T): void {
    const prev = this.value;
    this.value = next;
    this.opts.onChange?.(prev, next);
  }

  private read(): Read<T> {
    const file = this.opts.path;
    let text: string;
    try {
      // Absent: the empty registry; any other stat error (EACCES) is a problem, below.
      if (statSync(file, { throwIfNoEntry: false }) === undefined) return { value: this.opts.empty() };
      text = readFileSync(file, 'utf8');
      this.seenOnDisk = true;
    } catch (err) {
      return { problem: { file, line: 1, col: 1, message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` } };
    }
    const parsed = parseJsonLocated(text);
    if ('problem' in parsed) return { problem: { file, ...parsed.problem } };
    try {
      return { value: this.opts.decode(parsed.value) };
    } catch (err) {
      if (!(err instanceof RegistryShapeError)) throw err;
      const at = err.key === undefined ? -1 : text.indexOf(JSON.stringify(err.key));
      return { problem: { file, ...lineAndColumn(text, Math.max(at, 0)), message: err.message } };
    }
  }
}

/**
 * A registry that follows its file and announces each change as a `change` event (what `diff`
 * finds between the last good registry and the new one), logged at info with `describe`'s context.
 */
export abstract class FollowedRegistry<T, Change> extends EventEmitter<{ change: [Change] }> {
  protected readonly file: RegistryFile<T>;

  constructor(
    opts: Omit<RegistryFileOptions<T>, 'onChange'>,
    diff: (prev: T, next: T) => Change[],
    describe: (change: Change) => [Record<string, unknown>, string],
  ) {
    super();
    this.file = new RegistryFile({
      ...opts,
      onChange: (prev, next) => {
        for (const change of diff(prev, next)) {
          const [ctx, msg] = describe(change);
          opts.log?.info(ctx, msg);
          this.emit('change', change);
        }
      },
    });
  }

  /** First load (the hub, at start): throws ECONFIG `file:line:col: …` when the file is broken. */
  load(): void {
    this.file.load();
  }

  /** Follow the file for changes made by other processes (the hub does; a tool need not). */
  watch(): void {
    this.file.watch();
  }

  stop(): void {
    this.file.stop();
  }
}
