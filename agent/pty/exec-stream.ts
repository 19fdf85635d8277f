import type { ChildProcess } from 'node:child_process';
import { Duplex } from 'node:stream';
import type { PtyExit } from './pty-stream';

/** stderr goes out in control messages of at most this many bytes (base64 must fit a 4096-character frame). */
export const STDERR_CHUNK_BYTES = 2048;

/**
 * A command run with pipes (no terminal) as a Duplex, joined to a WebSocket like a PtyStream: what
 * is written goes to its stdin (end: stdin closed, as `ssh host cmd` does at end of input), what it
 * writes to stdout is read, with backpressure both ways. Its stderr goes to `onStderr` in chunks,
 * paused while `stderrBlocked()` says the way out is full. The readable side ends once the command
 * has exited and closed its stdout and stderr, so the exit status is known by then.
 */
export class ExecStream extends Duplex {
  private exitInfo?: PtyExit;
  readonly exited: Promise<PtyExit>;
  private stderrTimer?: NodeJS.Timeout;

  constructor(
    private readonly child: ChildProcess,
    private readonly onStderr: (chunk: Buffer) => void,
    private readonly stderrBlocked: () => boolean,
  ) {
    super({ allowHalfOpen: true });
    child.stdin!.on('error', () => undefined); // EPIPE: the command stopped reading; its exit says the rest
    child.stdout!.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) child.stdout!.pause();
    });
    child.stderr!.on('data', this.stderrOnData);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code: signal ? null : code, signal };
        resolve(this.exitInfo);
      });
      // 'close': exited and both pipes at their end; 'error': it could not be started at all.
      child.once('close', () => {
        clearTimeout(this.stderrTimer);
        this.push(null);
      });
      child.once('error', (err) => this.destroy(err));
    });
  }

  private readonly stderrOnData = (chunk: Buffer): void => {
    for (let at = 0; at < chunk.length; at += STDERR_CHUNK_BYTES) this.onStderr(chunk.subarray(at, at + STDERR_CHUNK_BYTES));
    if (this.stderrBlocked()) this.waitStderrRoom();
  };

  /** Holds stderr while the WebSocket's buffer is full (control frames bypass the tunnel's sink). */
  private waitStderrRoom(): void {
    const stderr = this.child.stderr!;
    stderr.pause();
    const check = (): void => {
      if (this.destroyed) return;
      if (this.stderrBlocked()) this.stderrTimer = setTimeout(check, 10);
      else stderr.resume();
    };
    this.stderrTimer = setTimeout(check, 10);
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  get exit(): PtyExit | undefined {
    return this.exitInfo;
  }

  override _read(): void {
    this.child.stdout!.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const stdin = this.child.stdin!;
    if (this.exitInfo || stdin.destroyed) return cb(); // the command is gone: input has nowhere to go
    if (stdin.write(chunk)) return cb();
    const done = (): void => {
      stdin.off('drain', done);
      stdin.off('close', done);
      cb();
    };
    stdin.on('drain', done);
    stdin.on('close', done);
  }

  /** The service's end of input: the command reads end-of-file. */
  override _final(cb: (err?: Error | null) => void): void {
    this.child.stdin!.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    clearTimeout(this.stderrTimer);
    cb(err);
  }
}
