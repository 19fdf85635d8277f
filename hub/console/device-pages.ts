import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { Logger } from '../../core/log';
import { MAX_NAME_CHARS, SECURITY_HEADERS, redirect, refuseUpgrade, sendText } from './http-util';
import type { OperatorCheck } from './operator-check';
import { sessionForUpgrade, type Session, type SessionStore } from './sessions';
import { parseDeviceWebPath, proxyHttp, proxyUpgrade, type DeviceWebTarget } from './web-proxy';

/**
 * Devices' own web pages on the hub's second port (`--device-pages-listen`, hub/console/web-proxy.ts
 * does the forwarding): only `/console/d/{device}/{service}/…`, only with a console session whose
 * operator may reach the device. On the console's port the same paths are redirected here.
 */
export class DevicePages {
  constructor(
    private readonly deps: {
      sessions: SessionStore;
      operators: OperatorCheck;
      log: Logger;
      /** The stream maker for one session's request to one device service. */
      open: (session: Session, deviceId: string, service: string, remote: string | undefined) => () => Promise<WebSocket>;
      /** The pages port; undefined: off on this hub. */
      port: () => number | undefined;
    },
  ) {}

  /**
   * A device's page asked for on the console's port: sent to the device pages port (same host name),
   * never served here, where the page would run in the console's origin.
   */
  redirect(req: IncomingMessage, res: ServerResponse, url: string): void {
    req.resume();
    const port = this.deps.port();
    if (!port) return sendText(res, 404, "devices' own pages are off on this hub: start it with --device-pages-listen HOST:PORT (docs/console.md)\n");
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)$/.test(host)) return sendText(res, 400, 'bad Host header\n');
    res.writeHead(307, { ...SECURITY_HEADERS, location: `https://${host}:${port}${url}`, 'content-length': 0 }).end();
  }

  /** A request on the device pages port: `/console/d/{device}/{service}/…` with a console session, nothing else. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const web = parseDeviceWebPath(url);
    const session = web ? this.deps.sessions.fromRequest(req) : undefined;
    if (!web) {
      req.resume();
      return sendText(res, 404, "this port serves devices' own pages only: /console/d/DEVICE/SERVICE/\n");
    }
    if (!session || !this.deps.operators.sees(session.operator, web.deviceId)) {
      req.resume();
      return sendText(res, 401, 'sign in to the hub console first, on its own port\n');
    }
    this.serve(req, res, web, session).catch((err: unknown) => {
      this.deps.log.error({ err, path: url.slice(0, 200) }, 'device page request failed');
      if (!res.headersSent) sendText(res, 500, 'internal error\n');
      else res.destroy();
    });
  }

  private async serve(req: IncomingMessage, res: ServerResponse, target: DeviceWebTarget, session: Session): Promise<void> {
    if (target.rest === undefined) {
      req.resume();
      return redirect(res, `${target.prefix}/`);
    }
    if (target.deviceId.length > MAX_NAME_CHARS || target.service.length > MAX_NAME_CHARS) return void sendText(res, 404, 'not found\n');
    const cut = (): void => void res.destroy();
    session.onEnd.add(cut);
    res.on('close', () => session.onEnd.delete(cut));
    await proxyHttp(req, res, { ...target, rest: target.rest }, this.deps.open(session, target.deviceId, target.service, req.socket.remoteAddress), this.deps.log);
  }

  /** A WebSocket (or other Upgrade) of a device's page, on the device pages port. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const web = parseDeviceWebPath(req.url ?? '');
    if (!web || web.rest === undefined) return refuseUpgrade(socket, 404, 'Not Found');
    const session = sessionForUpgrade(this.deps.sessions, req, socket);
    if (!session) return;
    if (!this.deps.operators.sees(session.operator, web.deviceId)) return refuseUpgrade(socket, 401, 'Unauthorized');
    proxyUpgrade(req, socket, head, { ...web, rest: web.rest }, this.deps.open(session, web.deviceId, web.service, req.socket.remoteAddress))
      .then((cut) => {
        session.onEnd.add(cut);
        socket.on('close', () => session.onEnd.delete(cut));
      })
      .catch((err: unknown) => refuseUpgrade(socket, 502, 'Bad Gateway', (err as Error).message));
  }
}
