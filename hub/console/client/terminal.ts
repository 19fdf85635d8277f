import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { el } from './dom';

type HubEvent = { type: 'open' } | { type: 'exit'; code: number | null; signal: string | null } | { type: 'error'; message: string };

/**
 * One terminal tab: xterm.js on a WebSocket to the hub (/console/api/terminal), which opens the
 * device's PTY stream on the operator's behalf. Keys and paste go out as bytes, the size follows the
 * window, and the remote exit status is shown when the shell ends.
 */
export class TerminalTab {
  readonly root: HTMLElement;
  readonly status = el('div', { class: 'term-status', role: 'status' }, 'connecting…');
  private readonly term: Terminal;
  private readonly fit = new FitAddon();
  private readonly ws: WebSocket;
  private readonly encoder = new TextEncoder();
  private readonly observer: ResizeObserver;
  ended = false;

  constructor(
    readonly deviceId: string,
    readonly service: string,
    readonly onEnded: () => void,
  ) {
    const screen = el('div', { class: 'term-screen' });
    this.root = el('section', { class: 'terminal', 'data-device': deviceId }, this.status, screen);
    this.term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000, fontFamily: 'ui-monospace, Menlo, Consolas, monospace' });
    this.term.loadAddon(this.fit);
    this.term.open(screen);
    const q = new URLSearchParams({ device: deviceId, service });
    this.ws = new WebSocket(`wss://${location.host}/console/api/terminal?${q.toString()}`);
    this.ws.binaryType = 'arraybuffer';
    this.ws.onmessage = (ev) => this.onMessage(ev);
    this.ws.onclose = (ev) => this.onClose(ev);
    this.term.onData((d) => this.send(this.encoder.encode(d)));
    this.term.onBinary((d) => this.send(Uint8Array.from(d, (c) => c.charCodeAt(0) & 0xff)));
    this.term.onResize(({ cols, rows }) => this.sendSize(cols, rows));
    this.observer = new ResizeObserver(() => this.refit());
    this.observer.observe(screen);
  }

  private send(bytes: Uint8Array): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  private sendSize(cols: number, rows: number): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: 'resize', cols, rows }));
  }

  /** Fits the terminal to its box (a hidden tab has none: it is fitted when shown). */
  refit(): void {
    if (this.root.offsetParent === null) return;
    try {
      this.fit.fit();
    } catch {
      // not laid out yet
    }
  }

  focus(): void {
    this.refit();
    this.term.focus();
  }

  private onMessage(ev: MessageEvent): void {
    if (typeof ev.data !== 'string') return void this.term.write(new Uint8Array(ev.data as ArrayBuffer));
    let msg: HubEvent;
    try {
      msg = JSON.parse(ev.data) as HubEvent;
    } catch {
      return;
    }
    if (msg.type === 'open') {
      this.status.textContent = `${this.deviceId}: connected`;
      this.refit();
      this.sendSize(this.term.cols, this.term.rows);
      this.term.focus();
    } else if (msg.type === 'exit') {
      this.finish(msg.code !== null ? `exit status ${msg.code}` : `killed by ${msg.signal ?? 'a signal'}`);
    } else if (msg.type === 'error') {
      this.finish(`error: ${msg.message}`);
    }
  }

  private onClose(ev: CloseEvent): void {
    if (!this.ended) this.finish(ev.code === 1000 ? 'the stream ended' : `disconnected${ev.reason ? `: ${ev.reason}` : ''} (${ev.code})`);
  }

  private finish(text: string): void {
    if (this.ended) return;
    this.ended = true;
    this.status.textContent = `${this.deviceId}: ${text}`;
    this.root.classList.add('ended');
    this.term.write(`\r\n\x1b[7m[${text}]\x1b[0m\r\n`);
    this.onEnded();
  }

  close(): void {
    this.observer.disconnect();
    this.ws.close(1000);
    this.term.dispose();
  }
}
