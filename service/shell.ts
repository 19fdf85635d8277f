import type { Readable, Writable } from 'node:stream';
import { constants } from 'node:os';
import type { WebSocket } from 'ws';
import type { Logger } from '../core/log';
import { startTunnel, type Tunnel, type TunnelResult } from '../core/tunnel';
import { CLOSE, DevstreamsError, isDevstreamsError } from '../wire';
import type { HubClient } from './hub-client';
import { StdioStream } from './stdio-stream';

/** What `devstreams shell` exits with when there is no remote exit status (as ssh does). */
export const EXIT_NO_REMOTE_STATUS = 255;
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
  /** One command (`shell DEVICE -- CMD ARGS`), run by the remote shell with `-c`, like `ssh host cmd`. */
  command?: string[];
  /** A terminal on the device: default only for a shell with stdin on a terminal (`-t` forces it, `-T` refuses it). */
  tty?: boolean;
  log: Logger;
}

/** The longest command line sent (the agent refuses longer: a start message must fit one control frame). */
export const MAX_COMMAND_CHARS = 3_500;

function terminalSize(from: TtyOutput[]): { cols: number; rows: number } {
  const tty = from.find((s) => s.isTTY && s.columns && s.rows);
  return tty ? { cols: tty.columns!, rows: tty.rows! } : FALLBACK_SIZE;
}

function signalExitCode(signal: string): number {
  const n = (constants.signals as Record<string, number>)[signal];
  return n ? 128 + n : EXIT_NO_REMOTE_STATUS;
}

/**
 * Tells the device what to start, then lets stdin flow: the start message goes before any byte. A
 * peer without `exec` (an agent from before it, or IoT Hub) gets the old terminal session, where
 * the end of piped input is typed as Ctrl-D; a command cannot be run there.
 */
async function startRemote(tunnel: Tunnel, local: StdioStream, how: { deviceId: string; command?: string[]; tty: boolean; interactive: boolean }): Promise<void> {
  const peer = await tunnel.peer.ready;
  if (peer.has('exec')) {
    tunnel.sendControl({ type: 'exec', tty: how.tty, ...(how.command ? { argv: how.command } : {}) });
    return local.release(how.tty && !how.interactive ? 'eot' : 'end');
  }
  if (how.command) {
    tunnel.close(CLOSE.NORMAL, 'the peer cannot run commands');
    await tunnel.done;
    throw new DevstreamsError(
      'EHUB_ERROR',
      `the stream to ${how.deviceId} cannot run a command: its agent (older than exec) or its hub (IoT Hub) does not speak devstreams' exec extension; pipe the command into devstreams shell ${how.deviceId} instead`,
    );
  }
  local.release(how.interactive ? 'end' : 'eot');
}

/**
 * `devstreams shell DEVICE [SERVICE] [-- CMD ARGS]`: a terminal on the device, or one command like
 * `ssh host cmd`. On a terminal it goes raw (every key, Ctrl-C included, belongs to the remote
 * shell), sends the size at start and on every resize, and restores the terminal on every way out.
 * Without a terminal (a command, or stdin not a terminal) the remote side runs with pipes: stdout
 * and stderr apart and clean, stdin passed through with its end. An agent from before `exec` gets
 * the old way: a terminal, with the end of piped input typed as Ctrl-D. Resolves with the exit code
 * to use: the remote status, 128+N when it was killed by signal N, or 255 when there is no status.
 */
export async function runShell(opts: ShellOptions): Promise<number> {
  const { client, deviceId, service, stdin, stdout, stderr, log, command } = opts;
  const say = (text: string): void => void stderr.write(`devstreams: ${text}\n`);
  if (command && command.join(' ').length > MAX_COMMAND_CHARS) {
    throw new DevstreamsError('EUSAGE', `the command is longer than ${MAX_COMMAND_CHARS} characters: send a script on stdin instead`);
  }
  let ws: WebSocket;
  try {
    ws = await client.openStream(await client.requestStream(deviceId, service));
  } catch (err) {
    // Not opened: the caller exits with devstreams' own code for the cause (docs/exit-codes.md).
    if (isDevstreamsError(err, 'EDEVICE_REFUSED')) throw new DevstreamsError(err.code, `${err.message} (is a pty service named "${service}" in the agent's config?)`);
    throw err;
  }

  const wantTty = opts.tty ?? (!command && stdin.isTTY === true);
  const interactive = wantTty && stdin.isTTY === true && typeof stdin.setRawMode === 'function';
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
    // Input waits until the device knows what to start: the start message goes before any byte.
    const local = new StdioStream(stdin, stdout, { held: true, remoteEnd: 'stop-input' });
    let remoteExit: { code: number | null; signal: string | null } | undefined;
    const tunnel = startTunnel(local, ws, {
      // The end of piped input is an eof the remote command reads; on a terminal it is a hang-up.
      halfClose: true,
      onControl: (msg) => {
        if (msg?.type === 'exit') {
          remoteExit = { code: typeof msg.code === 'number' ? msg.code : null, signal: typeof msg.signal === 'string' ? msg.signal : null };
        } else if (msg?.type === 'stderr' && typeof msg.data === 'string') {
          stderr.write(Buffer.from(msg.data, 'base64'));
        }
      },
    });
    await startRemote(tunnel, local, { deviceId, tty: wantTty, interactive, ...(command ? { command } : {}) });
    const sendSize = (): void => tunnel.sendControl({ type: 'resize', ...terminalSize(sizeFrom) });
    if (wantTty && (interactive || sizeFrom.some((s) => s.isTTY))) {
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
