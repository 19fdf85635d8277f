import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from '../../core/log';
import { closeStreamSocket } from '../../core/ws-sink';
import { printableAscii } from '../../core/terminal-text';
import { CLOSE } from '../../wire';
import type { ControlPlane } from '../control-plane';
import type { DeviceHealth } from '../devices';
import { RateLimiter } from '../rate-limit';
import type { StreamAudit } from '../stream-audit';
import type { StreamingEndpoint } from '../streaming-endpoint';
import { CONSOLE_CSP, PUBLIC_ASSETS, loadAssets, type ConsoleAssets } from './assets';
import { SECURITY_HEADERS, fromSameOrigin, readJsonBody, redirect, refuseUpgrade, sendJson, sendText } from './http-util';
import { LiveFeed } from './live';
import type { StreamOpener } from './open-stream';
import type { OperatorCheck } from './operator-check';
import { SessionStore, clearedSessionCookie, sessionCookie, type Session } from './sessions';
import { bridgeTerminal, sendEvent } from './terminal';
import { parseDeviceWebPath, proxyHttp, proxyUpgrade, type DeviceWebTarget } from './web-proxy';

export const CONSOLE_PATH = '/console/';
export const TERMINAL_PATH = '/console/api/terminal';
export const CSRF_HEADER = 'x-devstreams-csrf';
/** How often sessions are checked against their operator (removed, key changed) and their limits. */
export const SESSION_SWEEP_MS = 2_000;
/** Sign-in attempts per remote address: a burst, then one a second. */
export const SIGN_IN_LIMIT = { burst: 10, perSecond: 1 };
/** Device and service names in console URLs. */
const MAX_NAME_CHARS = 128;

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
  /** Told of each connection that carried a valid session (it no longer counts as unauthenticated). */
  onAuthorized?: (socket: IncomingMessage['socket']) => void;
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
  private readonly signIns = new RateLimiter(SIGN_IN_LIMIT);
  private sweepTimer?: NodeJS.Timeout;

  constructor(private readonly deps: ConsoleDeps) {
    this.sessions = new SessionStore(deps.operators);
    this.sessions.onUsed = (req) => deps.onAuthenticated?.(req.socket);
    this.live = new LiveFeed(deps.broker, deps.devices, deps.endpoint, deps.audit);
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
  /** The request's session; its connection then counts as authenticated (hub/admission.ts). */
  private sessionOf(req: IncomingMessage): Session | undefined {
    const session = this.sessions.fromRequest(req);
    if (session) this.deps.onAuthorized?.(req.socket);
    return session;
  }

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
      if (this.sessionOf(req)) return redirect(res, CONSOLE_PATH);
      return this.servePage(res, this.assets.loginPage);
    }
    if (path === '/console/api/login' && method === 'POST') return this.signIn(req, res);

    if (parseDeviceWebPath(url)) return this.redirectToDevicePages(req, res, url);
    const session = this.sessionOf(req);
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
    if (!file || (!PUBLIC_ASSETS.has(name) && !this.sessionOf(req))) return sendText(res, 404, 'not found\n');
    const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const body = gzip ? file.gzip : file.body;
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': file.type, 'content-length': body.length, 'cache-control': 'private, max-age=86400', vary: 'accept-encoding', ...(gzip ? { 'content-encoding': 'gzip' } : {}) });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private async signIn(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const remote = req.socket.remoteAddress ?? '';
    if (!fromSameOrigin(req) || !/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      req.resume();
      return sendJson(res, 403, { error: 'cross-site request refused' });
    }
    const wait = this.signIns.take(remote);
    if (wait) {
      req.resume();
      return sendJson(res, 429, { error: `too many sign-in attempts: retry in ${wait} s` }, { 'retry-after': String(wait) });
    }
    const body = await readJsonBody(req);
    if (body === 'too-large') return sendJson(res, 413, { error: 'sign-in body too large' }, { connection: 'close' });
    if (body === 'malformed') return sendJson(res, 400, { error: 'sign-in wants a JSON object {"operator", "key"}' });
    const operator = typeof body.operator === 'string' ? body.operator.slice(0, MAX_NAME_CHARS) : '';
    const key = typeof body.key === 'string' ? body.key.slice(0, 1024) : '';
    const ok = operator && key ? this.deps.operators.verify(operator, key) : undefined;
    if (!ok) {
      this.deps.log.warn({ operator: printableAscii(operator, 100), remote }, 'console sign-in refused: wrong operator or key');
      return sendJson(res, 401, { error: 'wrong operator or key' });
    }
    const session = this.sessions.create(ok.operator, ok.revision);
    this.deps.onAuthorized?.(req.socket);
    this.deps.log.info({ operator: ok.operator, remote }, 'console sign-in');
    sendJson(res, 200, { operator: ok.operator, csrf: session.csrf }, { 'set-cookie': sessionCookie(session.id) });
  }

  private opener(session: Session, deviceId: string, service: string, remote: string | undefined): () => Promise<WebSocket> {
    return () => this.deps.openStream(deviceId, service, { operator: session.operator, ...(remote ? { remote } : {}) });
  }

  /**
   * A device's page asked for on the console's port: sent to the device pages port (same host name),
   * never served here, where the page would run in the console's origin.
   */
  private redirectToDevicePages(req: IncomingMessage, res: ServerResponse, url: string): void {
    req.resume();
    const port = this.deps.devicePagesPort?.();
    if (!port) return sendText(res, 404, "devices' own pages are off on this hub: start it with --device-pages-listen HOST:PORT (docs/console.md)\n");
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)$/.test(host)) return sendText(res, 400, 'bad Host header\n');
    res.writeHead(307, { ...SECURITY_HEADERS, location: `https://${host}:${port}${url}`, 'content-length': 0 }).end();
  }

  /** A request on the device pages port: `/console/d/{device}/{service}/…` with a console session, nothing else. */
  handleDevicePage(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const web = parseDeviceWebPath(url);
    const session = web ? this.sessionOf(req) : undefined;
    if (!web) {
      req.resume();
      return sendText(res, 404, "this port serves devices' own pages only: /console/d/DEVICE/SERVICE/\n");
    }
    if (!session || !this.deps.operators.sees(session.operator, web.deviceId)) {
      req.resume();
      return sendText(res, 401, 'sign in to the hub console first, on its own port\n');
    }
    this.serveDeviceWeb(req, res, web, session).catch((err: unknown) => {
      this.deps.log.error({ err, path: url.slice(0, 200) }, 'device page request failed');
      if (!res.headersSent) sendText(res, 500, 'internal error\n');
      else res.destroy();
    });
  }

  private async serveDeviceWeb(req: IncomingMessage, res: ServerResponse, target: DeviceWebTarget, session: Session): Promise<void> {
    if (target.rest === undefined) {
      req.resume();
      return redirect(res, `${target.prefix}/`);
    }
    if (target.deviceId.length > MAX_NAME_CHARS || target.service.length > MAX_NAME_CHARS) return void sendText(res, 404, 'not found\n');
    const cut = (): void => void res.destroy();
    session.onEnd.add(cut);
    res.on('close', () => session.onEnd.delete(cut));
    await proxyHttp(req, res, { ...target, rest: target.rest }, this.opener(session, target.deviceId, target.service, req.socket.remoteAddress), this.deps.log);
  }

  /** The session of an Upgrade from a page of this origin; refuses the socket (and returns undefined) otherwise. */
  private upgradeSession(req: IncomingMessage, socket: Duplex): Session | undefined {
    const session = this.sessionOf(req);
    if (!session) refuseUpgrade(socket, 401, 'Unauthorized');
    else if (!fromSameOrigin(req)) refuseUpgrade(socket, 403, 'Forbidden');
    else return session;
    return undefined;
  }

  /** A WebSocket (or other Upgrade) of a device's page, on the device pages port. */
  handleDevicePageUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const web = parseDeviceWebPath(req.url ?? '');
    if (!web || web.rest === undefined) return refuseUpgrade(socket, 404, 'Not Found');
    const session = this.upgradeSession(req, socket);
    if (!session) return;
    if (!this.deps.operators.sees(session.operator, web.deviceId)) return refuseUpgrade(socket, 401, 'Unauthorized');
    proxyUpgrade(req, socket, head, { ...web, rest: web.rest }, this.opener(session, web.deviceId, web.service, req.socket.remoteAddress))
      .then((cut) => {
        session.onEnd.add(cut);
        socket.on('close', () => session.onEnd.delete(cut));
      })
      .catch((err: unknown) => refuseUpgrade(socket, 502, 'Bad Gateway', (err as Error).message));
  }

  /** True when the upgrade is the console's terminal (it is then answered). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const url = req.url ?? '';
    const path = url.split('?')[0]!;
    if (path !== TERMINAL_PATH) return false;
    const session = this.upgradeSession(req, socket);
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
