import { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import type { Logger } from '../../core/log';
import { startTunnel } from '../../core/tunnel';
import { WebSocketSink, closeStreamSocket } from '../../core/ws-sink';
import { CLOSE, decodeControl } from '../../wire';

/** Terminal sizes the console passes on; anything else from a browser is dropped. */
export const MAX_TERMINAL_COLS = 1000;
export const MAX_TERMINAL_ROWS = 500;
/** A browser's text frames are small JSON control messages. */
export const MAX_BROWSER_TEXT_BYTES = 1024;

/**
 * What the console's terminal page and the hub say to each other over the browser's WebSocket:
 * binary frames are the terminal's bytes both ways; text frames are JSON. From the browser only
 * `{"type":"resize","cols":N,"rows":N}`; from the hub `{"type":"open"}` once the device's PTY is
 * reached, `{"type":"exit","code":N|null,"signal":S|null}` when the remote shell ends, and
 * `{"type":"error","message":"…"}` when the stream could not be opened or failed.
 */
export type TerminalEvent = { type: 'open' } | { type: 'exit'; code: number | null; signal: string | null } | { type: 'error'; message: string };

export function sendEvent(ws: WebSocket, ev: TerminalEvent): void {
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(ev));
}

/** A browser's resize, validated; undefined for anything else. */
export function parseResize(text: string): { cols: number; rows: number } | undefined {
  if (text.length > MAX_BROWSER_TEXT_BYTES) return undefined;
  const msg = decodeControl(text);
  if (msg?.type !== 'resize') return undefined;
  const { cols, rows } = msg;
  if (!Number.isInteger(cols) || !Number.isInteger(rows)) return undefined;
  if ((cols as number) < 1 || (cols as number) > MAX_TERMINAL_COLS || (rows as number) < 1 || (rows as number) > MAX_TERMINAL_ROWS) return undefined;
  return { cols: cols as number, rows: rows as number };
}

/**
 * The browser's WebSocket as the local side of a stream tunnel: its binary frames are read, the
 * device's bytes are written to it with backpressure, and its text frames go to `onText`.
 */
class BrowserSide extends Duplex {
  private readonly sink: WebSocketSink;

  constructor(
    private readonly ws: WebSocket,
    onText: (text: string) => void,
    private readonly onFinal: () => void,
  ) {
    super({ allowHalfOpen: true });
    this.sink = new WebSocketSink(ws);
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (!isBinary) return onText(data.toString());
      if (!this.push(data as Buffer)) ws.pause();
    });
    ws.on('close', () => {
      this.push(null);
      this.destroy();
    });
    ws.on('error', () => {
      // 'close' follows
    });
  }

  override _read(): void {
    if (this.ws.isPaused) this.ws.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.sink.write(chunk)) cb();
    else this.sink.once('drain', () => cb());
  }

  /** The device ended the stream: the browser gets the exit status, then a normal close. */
  override _final(cb: (err?: Error | null) => void): void {
    this.onFinal();
    cb();
  }
}

export interface TerminalContext {
  deviceId: string;
  service: string;
  operator: string;
  log: Logger;
}

/**
 * Joins a browser's terminal WebSocket and the device's PTY stream. Returns a function that ends
 * the terminal from the hub (sign-out, the operator removed, hub shutting down).
 */
export function bridgeTerminal(browser: WebSocket, device: WebSocket, ctx: TerminalContext): (reason: string) => void {
  let exit: { code: number | null; signal: string | null } | undefined;
  const endBrowser = (): void => {
    if (exit) sendEvent(browser, { type: 'exit', ...exit });
    closeStreamSocket(browser, CLOSE.NORMAL, exit ? 'the shell ended' : 'the stream ended');
  };
  // Sizes that come before the tunnel exists (none do today: the hub says "open" only after it).
  let sendSize: (size: { cols: number; rows: number }) => void = () => undefined;
  const local = new BrowserSide(
    browser,
    (text) => {
      const size = parseResize(text);
      if (!size) return void ctx.log.debug({ device: ctx.deviceId }, 'console terminal: unknown message from the browser ignored');
      sendSize(size);
    },
    endBrowser,
  );
  const tunnel = startTunnel(local, device, {
    halfClose: false,
    onControl: (msg) => {
      if (msg?.type === 'exit') exit = { code: typeof msg.code === 'number' ? msg.code : null, signal: typeof msg.signal === 'string' ? msg.signal : null };
    },
  });
  // What to start, before anything else, to a device that runs commands (exec): its shell on a
  // terminal. Without it such a device waits a few seconds for this before starting the shell.
  tunnel.sendControl({ type: 'exec', tty: true });
  // Sent only when the device announced `resize` (an IoT Hub SDK device gets bytes alone).
  sendSize = (size) => tunnel.sendControl({ type: 'resize', ...size });
  sendEvent(browser, { type: 'open' });
  const started = Date.now();
  tunnel.done.then((r) => {
    ctx.log.info(
      { device: ctx.deviceId, service: ctx.service, operator: ctx.operator, exit_code: exit?.code, close_code: r.closeCode, bytes_out: r.bytesOut, bytes_in: r.bytesIn, duration_ms: Date.now() - started },
      'console terminal ended',
    );
    if (!exit && r.closeCode !== CLOSE.NORMAL) sendEvent(browser, { type: 'error', message: `the stream ended: ${r.closeReason || `code ${r.closeCode}`}` });
    closeStreamSocket(browser, CLOSE.NORMAL, '');
  });
  return (reason) => {
    tunnel.close(CLOSE.NORMAL, reason);
    closeStreamSocket(browser, CLOSE.LIMIT, reason);
  };
}
