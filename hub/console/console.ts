import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from '../../core/log';
import { closeStreamSocket } from '../../core/ws-sink';
import { CLOSE } from '../../wire';
import type { ControlPlane } from '../control-plane';
import type { DeviceHealth } from '../devices';
import type { StreamAudit } from '../stream-audit';
import type { StreamingEndpoint } from '../streaming-endpoint';
import { CONSOLE_CSP, PUBLIC_ASSETS, loadAssets, type ConsoleAssets } from './assets';
import { DevicePages } from './device-pages';
import { MAX_NAME_CHARS, SECURITY_HEADERS, fromSameOrigin, redirect, refuseUpgrade, sendJson, sendText } from './http-util';
import { LiveFeed } from './live';
import type { StreamOpener } from './open-stream';
import type { OperatorCheck } from './operator-check';
import { SessionStore, clearedSessionCookie, sessionForUpgrade, type Session } from './sessions';
import { SignIn } from './sign-in';
import { bridgeTerminal, sendEvent } from './terminal';
import { parseDeviceWebPath } from './web-proxy';

export const CONSOLE_PATH = '/console/';
export const TERMINAL_PATH = '/console/api/terminal';
export const CSRF_HEADER = 'x-devstreams-csrf';
/** How often sessions are checked against their operator (removed, key changed) and their limits. */
export const SESSION_SWEEP_MS = 2_000;

export interface ConsoleDeps {
  log: Logger;
  /** A request came with a live console session: its connection counts as authenticated (hub/admission.ts). */
  onAuthenticated?: (socket: IncomingMessage['socket']) => void;
  operators: OperatorCheck;
  broker: ControlPlane;
  devices: DeviceHealth;
  endpoint: StreamingEndpoint;
  audit?: StreamAudit;
  /** Told when an operator changes (removed, key rotated): its sessions are checked at once. */
  operatorChanges?: { on(event: 'change', f: () => void): unknown; off(event: 'change', f: () => void): unknown };
  openStream: StreamOpener;
  /** dist/console by default. */
  assetsDir?: string;
  /** The port devices' own pages are served on (hub --device-pages-listen); undefined: none. */
  devicePagesPort?: () => number | undefined;
}

/**
 * The hub's web console (docs/console.md), on the hub's own TLS port under /console/: sign-in with
 * an operator credential, the devices live, terminals in the browser, the devices' own web pages
 * through streams, the open streams. Every page but the sign-in page needs a session.
 */
export class HubConsole {
  private assets?: ConsoleAssets;
  private readonly sessions: SessionStore;
  private readonly live: LiveFeed;
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 });
  private readonly signIn: SignIn;
  /** Devices' own pages, on the second port. */
  readonly pages: DevicePages;
  private sweepTimer?: NodeJS.Timeout;

  constructor(private readonly deps: ConsoleDeps) {
    this.sessions = new SessionStore(deps.operators);
    this.sessions.onUsed = (req) => deps.onAuthenticated?.(req.socket);
    this.live = new LiveFeed(deps.broker, deps.devices, deps.endpoint, deps.audit);
    this.signIn = new SignIn({ operators: deps.operators, sessions: this.sessions, log: deps.log, ...(deps.onAuthenticated ? { onAuthenticated: deps.onAuthenticated } : {}) });
    this.pages = new DevicePages({
      sessions: this.sessions,
      operators: deps.operators,
      log: deps.log,
      open: (session, deviceId, service, remote) => () => deps.openStream(deviceId, service, { operator: session.operator, ...(remote ? { remote } : {}) }),
      port: () => deps.devicePagesPort?.(),
    });
  }

  /** Loads the bundled pages; without them the console answers 503 and the rest of the hub runs on. */
  start(): void {
    try {
      this.assets = loadAssets(this.deps.assetsDir);
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'web console files not found (run make build): the console is off');
    }
    this.live.start();
    this.sweepTimer = setInterval(this.sweep, SESSION_SWEEP_MS);
    this.sweepTimer.unref();
    this.deps.operatorChanges?.on('change', this.sweep);
  }

  /** Ends sessions that expired or whose operator was removed or changed, with what they hold open. */
  private readonly sweep = (): void => {
    const ended = this.sessions.sweep();
    if (ended) this.deps.log.info({ sessions: ended }, 'console sessions ended (expired, operator removed or its key or limits changed)');
  };

  /** True when the request is the console's (it is then answered). */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '/';
    if (url === '/' && req.method === 'GET') {
      redirect(res, CONSOLE_PATH);
      return true;
    }
    if (url !== '/console' && !url.startsWith(CONSOLE_PATH)) return false;
    this.route(req, res, url).catch((err: unknown) => {
      this.deps.log.error({ err, path: url.slice(0, 200) }, 'console request failed');
      if (!res.headersSent) sendText(res, 500, 'internal error\n');
      else res.destroy();
    });
    return true;
  }

  private async route(req: IncomingMessage, res: ServerResponse, url: string): Promise<void> {
    const path = url.split('?')[0]!;
    const method = req.method ?? 'GET';
    if (!this.assets) return void sendText(res, 503, 'the web console is not built into this hub (run make build)\n');
    if (path.startsWith('/console/assets/')) return this.serveAsset(req, res, path.slice('/console/assets/'.length));
    if (path === '/console/login' && method === 'GET') {
      if (this.sessions.fromRequest(req)) return redirect(res, CONSOLE_PATH);
      return this.servePage(res, this.assets.loginPage);
    }
    if (path === '/console/api/login' && method === 'POST') return this.signIn.handle(req, res);

    if (parseDeviceWebPath(url)) return this.pages.redirect(req, res, url);
    const session = this.sessions.fromRequest(req);
    if (!session) {
      req.resume();
      if (path.startsWith('/console/api/')) return sendJson(res, 401, { error: 'not signed in' });
      return redirect(res, '/console/login');
    }
    if ((path === '/console' || path === CONSOLE_PATH) && method === 'GET') return this.servePage(res, this.assets.appPage);
    if (path === '/console/api/session' && method === 'GET') return sendJson(res, 200, { operator: session.operator, csrf: session.csrf, devicePagesPort: this.deps.devicePagesPort?.() ?? null });
    const sees = (deviceId: string): boolean => this.deps.operators.sees(session.operator, deviceId);
    if (path === '/console/api/state' && method === 'GET') return sendJson(res, 200, this.live.state(sees));
    if (path === '/console/api/events' && method === 'GET') {
      const end = this.live.add(res, sees);
      session.onEnd.add(end);
      res.on('close', () => session.onEnd.delete(end));
      return;
    }
    if (method === 'POST') {
      req.resume();
      if (!fromSameOrigin(req) || req.headers[CSRF_HEADER] !== session.csrf) return sendJson(res, 403, { error: 'cross-site request refused' });
      if (path === '/console/api/logout') {
        this.deps.log.info({ operator: session.operator, remote: req.socket.remoteAddress }, 'console sign-out');
        this.sessions.end(session.id);
        return sendJson(res, 200, { ok: true }, { 'set-cookie': clearedSessionCookie() });
      }
      const close = /^\/console\/api\/streams\/([0-9a-f]{32})\/close$/.exec(path);
      if (close) {
        const open = this.deps.endpoint.list().find((x) => x.streamId === close[1]);
        if (!open || !sees(open.deviceId)) return sendJson(res, 404, { error: 'no such open stream' });
        const closed = this.deps.endpoint.closeStream(close[1]!, `closed by operator ${session.operator} from the console`);
        return closed ? sendJson(res, 200, { ok: true }) : sendJson(res, 404, { error: 'no such open stream' });
      }
    }
    req.resume();
    sendJson(res, 404, { error: 'no such console page' });
  }

  private servePage(res: ServerResponse, html: string): void {
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-security-policy': CONSOLE_CSP, 'x-frame-options': 'DENY' });
    res.end(html);
  }

  private serveAsset(req: IncomingMessage, res: ServerResponse, name: string): void {
    const file = this.assets?.files.get(name);
    if (!file || (!PUBLIC_ASSETS.has(name) && !this.sessions.fromRequest(req))) return sendText(res, 404, 'not found\n');
    const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const body = gzip ? file.gzip : file.body;
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': file.type, 'content-length': body.length, 'cache-control': 'private, max-age=86400', vary: 'accept-encoding', ...(gzip ? { 'content-encoding': 'gzip' } : {}) });
    res.end(req.method === 'HEAD' ? undefined : body);
  }





  /** True when the upgrade is the console's terminal (it is then answered). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const url = req.url ?? '';
    const path = url.split('?')[0]!;
    if (path !== TERMINAL_PATH) return false;
    const session = sessionForUpgrade(this.sessions, req, socket);
    if (!session) return true;
    const query = new URL(url, 'https://hub.invalid').searchParams;
    const deviceId = query.get('device') ?? '';
    const service = query.get('service') ?? 'shell';
    if (!deviceId || deviceId.length > MAX_NAME_CHARS || service.length > MAX_NAME_CHARS) {
      refuseUpgrade(socket, 400, 'Bad Request');
      return true;
    }
    const remote = req.socket.remoteAddress;
    this.wss.handleUpgrade(req, socket, head, (browser) => this.openTerminal(browser, session, deviceId, service, remote));
    return true;
  }

  private openTerminal(browser: WebSocket, session: Session, deviceId: string, service: string, remote: string | undefined): void {
    const log = this.deps.log;
    const abort = new AbortController();
    let end: ((reason: string) => void) | undefined;
    const onEnd = (): void => {
      abort.abort();
      if (end) end('signed out');
      else closeStreamSocket(browser, CLOSE.LIMIT, 'signed out');
    };
    session.onEnd.add(onEnd);
    browser.on('close', () => {
      session.onEnd.delete(onEnd);
      abort.abort();
    });
    browser.on('error', () => undefined);
    // Typing in a terminal is using the session: it does not end as idle under the operator's hands.
    browser.on('message', () => this.sessions.touch(session));
    log.info({ device: deviceId, service, operator: session.operator }, 'console terminal requested');
    this.deps
      .openStream(deviceId, service, { operator: session.operator, signal: abort.signal, ...(remote ? { remote } : {}) })
      .then((device) => {
        if (browser.readyState !== browser.OPEN) return void closeStreamSocket(device, CLOSE.NORMAL, 'the operator left');
        end = bridgeTerminal(browser, device, { deviceId, service, operator: session.operator, log });
      })
      .catch((err: unknown) => {
        sendEvent(browser, { type: 'error', message: (err as Error).message });
        closeStreamSocket(browser, CLOSE.TARGET_UNAVAILABLE, 'the stream could not be opened');
      });
  }

  /** Ends every session and live view. Never throws. */
  stop(): void {
    clearInterval(this.sweepTimer);
    this.deps.operatorChanges?.off('change', this.sweep);
    try {
      this.sessions.endAll();
      this.live.stop();
      for (const ws of this.wss.clients) ws.terminate();
      this.wss.close();
    } catch (err) {
      this.deps.log.warn({ err }, 'error while stopping the console');
    }
  }
}
