import { EventEmitter } from 'node:events';
import { closeSync, constants as constants_fs, openSync } from 'node:fs';
import { Duplex, type Writable } from 'node:stream';
import { constants } from 'node:os';
import type { IPty } from './load-pty';

export interface PtyExit {
  code: number | null;
  signal: string | null;
}

const SIGNAL_NAMES = new Map<number, string>(Object.entries(constants.signals).map(([name, n]) => [n, name]));

/**
 * A PTY as a Duplex, so it joins a WebSocket through the same tunnel as a TCP socket. Reads pause
 * the PTY when the tunnel is full; writes wait for the PTY to drain. The readable side ends only
 * once the child has exited and all its output was read (node-pty emits exit after the last data).
 */
export class PtyStream extends Duplex {
  private exitInfo?: PtyExit;
  // node-pty's write() hides the socket's backpressure signal; the socket itself still has it.
  private readonly socket: Writable | undefined;
  readonly exited: Promise<PtyExit>;

  constructor(private readonly pty: IPty) {
    super({ allowHalfOpen: true });
    const maybeSocket = (pty as unknown as { _socket?: unknown })._socket;
    this.socket = maybeSocket && typeof (maybeSocket as Writable).write === 'function' ? (maybeSocket as Writable) : undefined;
    // Without a second 'error' listener node-pty rethrows socket errors other than EIO. EIO is how
    // Linux reports that the last process holding the terminal closed it: the normal end, which
    // onExit reports.
    (pty as unknown as EventEmitter).on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EIO' && err.code !== 'EAGAIN') this.destroy(err);
    });
    pty.onData((data) => {
      const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : (data as unknown as Buffer);
      if (!this.push(buf)) pty.pause();
    });
    this.holdSlave();
    this.exited = new Promise((resolve) => {
      pty.onExit(({ exitCode, signal }) => {
        this.releaseSlave();
        const name = signal ? (SIGNAL_NAMES.get(signal) ?? `SIG${signal}`) : null;
        this.exitInfo = { code: name ? null : exitCode, signal: name };
        resolve(this.exitInfo);
        this.push(null);
      });
    });
  }

  /**
   * Keeps our own descriptor of the terminal's slave side open while the shell runs. Without it the
   * master can see end-of-file the moment the shell exits, before the kernel has handed over the
   * shell's last output (measured: about 1 session in 200 lost its final `echo`). Held open, the
   * master reads to the end; node-pty closes it 200 ms after the exit and we let go then.
   */
  private slaveFd: number | undefined;
  private holdSlave(): void {
    const path = (this.pty as unknown as { ptsName?: unknown }).ptsName;
    if (typeof path !== 'string' || !path.startsWith('/dev/')) return;
    try {
      this.slaveFd = openSync(path, constants_fs.O_RDWR | constants_fs.O_NOCTTY); // libuv adds O_CLOEXEC
    } catch {
      // without it the session still works, with the rare loss described above
    }
  }
  private releaseSlave(): void {
    if (this.slaveFd === undefined) return;
    const fd = this.slaveFd;
    this.slaveFd = undefined;
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
  }

  /** The service side ended its input (a normal close): the terminal is hung up, as a modem would. */
  override _final(cb: (err?: Error | null) => void): void {
    this.emit('hangup');
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.releaseSlave();
    cb(err);
  }

  get pid(): number {
    return this.pty.pid;
  }

  get exit(): PtyExit | undefined {
    return this.exitInfo;
  }

  resize(cols: number, rows: number): void {
    if (this.exitInfo) return;
    this.pty.resize(cols, rows);
  }

  override _read(): void {
    this.pty.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.exitInfo) return cb(); // the shell is gone: input has nowhere to go
    this.pty.write(chunk as unknown as string); // node-pty writes Buffers as they are (typed as string)
    const socket = this.socket;
    if (!socket?.writableNeedDrain) return cb();
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      cb();
    };
    socket.on('drain', done);
    socket.on('close', done);
  }
}
