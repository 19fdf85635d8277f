import { Duplex, type Readable, type Writable } from 'node:stream';
import { constants } from 'node:os';
import type { WebSocket } from 'ws';
import type { Logger } from '../core/log';
import { startTunnel, type TunnelResult } from '../core/tunnel';
import { CLOSE, isDevstreamsError } from '../wire';
import type { HubClient } from './hub-client';

/** What `devstreams shell` exits with when there is no remote exit status (as ssh does). */
export const EXIT_NO_REMOTE_STATUS = 255;
const EOT = 0x04; // Ctrl-D: end of input for a terminal's line discipline
const LF = 0x0a;
const FALLBACK_SIZE = { cols: 80, rows: 24 };

export interface TtyInput extends Readable {
  isTTY?: boolean;
  setRawMode?: (mode: boolean) => unknown;
}
export interface TtyOutput extends Writable {
  isTTY?: boolean;
  columns?: number;
  rows?: number;
}

export interface ShellOptions {
  client: HubClient;
  deviceId: string;
  service: string;
  stdin: TtyInput;
  stdout: TtyOutput;
  /** Messages for the person (refusals, lost connections); never the remote's bytes. */
  stderr: Writable;
  /** Where the terminal size comes from (stdout, or stderr when stdout is redirected). */
  sizeFrom?: TtyOutput[];
  log: Logger;
}

/**
 * The local end of a shell stream: keystrokes from stdin, screen bytes to stdout. In a pipe, the
 * end of stdin becomes Ctrl-D (after a newline if the last line has none), so the remote shell
 * reads to the end and exits with its own status, the way a person typing would end it.
 */
class StdioStream extends Duplex {
  private lastByte = LF;

  constructor(
    private readonly input: Readable,
    private readonly output: Writable,
    endInputWithEot: boolean,
  ) {
    super({ allowHalfOpen: true });
    input.on('data', this.inputOnData);
    input.on('end', () => {
      if (!endInputWithEot) return void this.push(null);
      this.push(Buffer.from(this.lastByte === LF ? [EOT] : [LF, EOT]));
    });
    input.on('error', (err) => this.destroy(err));
    output.on('error', (err) => this.destroy(err)); // EPIPE: whoever read our stdout went away
  }

  private readonly inputOnData = (chunk: Buffer | string): void => {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (buf.length) this.lastByte = buf[buf.length - 1]!;
    if (!this.push(buf)) this.input.pause();
  };

  override _read(): void {
    this.input.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.output.write(chunk)) cb();
    else this.output.once('drain', () => cb());
  }

  /** The remote side closed: nothing more will be read either. */
  override _final(cb: (err?: Error | null) => void): void {
    this.input.off('data', this.inputOnData);
    this.input.pause();
    this.push(null);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.input.off('data', this.inputOnData);
    this.input.pause();
    cb(err);
  }
}

function terminalSize(from: TtyOutput[]): { cols: number; rows: number } {
  const tty = from.find((s) => s.isTTY && s.columns && s.rows);
  return tty ? { cols: tty.columns!, rows: tty.rows! } : FALLBACK_SIZE;
}

function signalExitCode(signal: string): number {
  const n = (constants.signals as Record<string, number>)[signal];
  return n ? 128 + n : EXIT_NO_REMOTE_STATUS;
}

/**
 * `devstreams shell DEVICE [SERVICE]`: a terminal on the device. On a terminal it goes raw (every
 * key, Ctrl-C included, belongs to the remote shell), sends the size at start and on every resize,
 * and restores the terminal on every way out. Resolves with the exit code to use: the remote
 * shell's status, 128+N when it was killed by signal N, or 255 when there is no remote status.
 */
export async function runShell(opts: ShellOptions): Promise<number> {
  const { client, deviceId, service, stdin, stdout, stderr, log } = opts;
  const say = (text: string): void => void stderr.write(`devstreams: ${text}\n`);
  let ws: WebSocket;
  try {
    ws = await client.openStream(await client.requestStream(deviceId, service));
  } catch (err) {
    if (isDevstreamsError(err, 'EDEVICE_REFUSED')) say(`${err.message} (is a pty service named "${service}" in the agent's config?)`);
    else say((err as Error).message);
    return EXIT_NO_REMOTE_STATUS;
  }

  const interactive = stdin.isTTY === true && typeof stdin.setRawMode === 'function';
  const sizeFrom = opts.sizeFrom ?? [stdout];
  let rawOn = false;
  const restore = (): void => {
    if (!rawOn) return;
    rawOn = false;
    try {
      stdin.setRawMode!(false);
    } catch {
      // the terminal is gone (hang-up): nothing to restore
    }
  };
  // The last line of defence: whatever ends the process, the terminal is left as we found it.
  process.on('exit', restore);
  const cleanups: (() => void)[] = [() => process.off('exit', restore)];
  let interruptedBy: NodeJS.Signals | undefined;
  try {
    if (interactive) {
      stdin.setRawMode!(true);
      rawOn = true;
    }
    const local = new StdioStream(stdin, stdout, !interactive);
    let remoteExit: { code: number | null; signal: string | null } | undefined;
    const tunnel = startTunnel(local, ws, {
      halfClose: false,
      onControl: (msg) => {
        if (msg?.type === 'exit') {
          remoteExit = { code: typeof msg.code === 'number' ? msg.code : null, signal: typeof msg.signal === 'string' ? msg.signal : null };
        }
      },
    });
    const sendSize = (): void => tunnel.sendControl({ type: 'resize', ...terminalSize(sizeFrom) });
    if (interactive || sizeFrom.some((s) => s.isTTY)) {
      sendSize();
      process.on('SIGWINCH', sendSize);
      cleanups.push(() => process.off('SIGWINCH', sendSize));
    }
    // Signals from outside (not Ctrl-C on a raw terminal, which is a byte for the remote side).
    const onSignal = (signal: NodeJS.Signals): void => {
      interruptedBy ??= signal;
      tunnel.close(CLOSE.NORMAL, `service side got ${signal}`);
    };
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(s, onSignal);
      cleanups.push(() => process.off(s, onSignal));
    }
    const r: TunnelResult = await tunnel.done;
    restore();
    log.debug({ close_code: r.closeCode, bytes_out: r.bytesOut, bytes_in: r.bytesIn }, 'shell stream closed');
    if (remoteExit) {
      if (remoteExit.code !== null) return remoteExit.code;
      if (remoteExit.signal) return signalExitCode(remoteExit.signal);
    }
    if (interruptedBy) return signalExitCode(interruptedBy);
    const why = r.closeReason || (r.closeCode === 1006 ? 'the connection was lost' : r.error ? (r.error as NodeJS.ErrnoException).code ?? r.error.message : 'no exit status was sent');
    say(`the shell on ${deviceId} ended without an exit status: ${why} (${r.closeCode})`);
    return EXIT_NO_REMOTE_STATUS;
  } finally {
    restore();
    for (const c of cleanups) c();
    stdin.pause();
  }
}
