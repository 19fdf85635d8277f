import { request, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { Logger } from '../../core/log';
import { startTunnel } from '../../core/tunnel';
import { CLOSE } from '../../wire';
import { refuseOnSocket } from '../http-guards';
import { duplexPair } from './duplex-pair';
import { SESSION_COOKIE } from './sessions';

/**
 * A device's own web pages through the hub: `/console/d/{device}/{service}/…` is forwarded, one
 * stream per HTTP request or WebSocket, to the TCP service of that name on the device (its `web`
 * on 8080, a Node-RED, a printer UI). A per-device sub-path rather than a host name: it needs no
 * wildcard DNS and no certificate per device; the price is that pages which use absolute URLs
 * (`/static/app.js`) miss the prefix, and a `Location: /x` redirect is rewritten but links in
 * the page are not (docs/console.md).
 */
export const DEVICE_WEB_PREFIX = '/console/d/';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
/** How long a device's web service may take to start its answer before the browser gets 504. */
export const DEVICE_RESPONSE_TIMEOUT_MS = 60_000;
/** Request head bytes the hub writes to a device's WebSocket service at most. */
const MAX_UPGRADE_HEAD_BYTES = 16 * 1024;

export interface DeviceWebTarget {
  deviceId: string;
  service: string;
  /** `/console/d/{device}/{service}` */
  prefix: string;
  /** The path and query on the device (`/` at least); undefined when the prefix lacks its slash. */
  rest: string | undefined;
}

export function parseDeviceWebPath(url: string): DeviceWebTarget | undefined {
  if (!url.startsWith(DEVICE_WEB_PREFIX)) return undefined;
  const m = /^\/console\/d\/([^/?#]+)\/([^/?#]+)(\/[^#]*)?(\?[^#]*)?$/.exec(url);
  if (!m) return undefined;
  try {
    const deviceId = decodeURIComponent(m[1]!);
    const service = decodeURIComponent(m[2]!);
    const prefix = `${DEVICE_WEB_PREFIX}${m[1]}/${m[2]}`;
    return { deviceId, service, prefix, rest: m[3] === undefined ? undefined : m[3] + (m[4] ?? '') };
  } catch {
    return undefined;
  }
}

/** Our session cookie never reaches the device; the device's own cookies do. */
function withoutSessionCookie(cookie: string | string[] | undefined): string | undefined {
  if (cookie === undefined) return undefined;
  const kept = (Array.isArray(cookie) ? cookie.join('; ') : cookie)
    .split(';')
    .map((c) => c.trim())
    .filter((c) => c && !c.startsWith(`${SESSION_COOKIE}=`));
  return kept.length ? kept.join('; ') : undefined;
}

/** The browser's headers as the device should see them: hop-by-hop and our cookie removed, X-Forwarded-* added. */
export function deviceRequestHeaders(req: IncomingMessage, prefix: string, keepUpgrade: boolean): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || k === 'cookie') continue;
    out[k] = v;
  }
  const cookie = withoutSessionCookie(req.headers.cookie);
  if (cookie) out.cookie = cookie;
  out['x-forwarded-proto'] = 'https';
  out['x-forwarded-prefix'] = prefix;
  if (req.socket.remoteAddress) out['x-forwarded-for'] = req.socket.remoteAddress;
  if (keepUpgrade) {
    out.connection = 'Upgrade';
    out.upgrade = req.headers.upgrade ?? 'websocket';
  } else {
    out.connection = 'close';
  }
  return out;
}

/** The device's answer headers for the browser: redirects and cookie paths kept under the prefix. */
export function browserResponseHeaders(headers: IncomingHttpHeaders, prefix: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k)) continue;
    out[k] = v;
  }
  const location = headers.location;
  if (typeof location === 'string' && location.startsWith('/') && !location.startsWith('//')) out.location = prefix + location;
  const setCookie = headers['set-cookie'];
  if (setCookie) out['set-cookie'] = setCookie.map((c) => c.replace(/;\s*path=\/([^;]*)/i, `; Path=${prefix}/$1`).replace(/;\s*domain=[^;]*/i, ''));
  return out;
}

export type OpenDeviceStream = () => Promise<WebSocket>;

/** Both ends of one proxied connection: ours to the HTTP client, the tunnel's to the device. */
async function connectToDevice(open: OpenDeviceStream): Promise<{ socket: Duplex; end: () => void }> {
  const ws = await open();
  const [socket, local] = duplexPair();
  const tunnel = startTunnel(local, ws);
  return { socket, end: () => tunnel.close(CLOSE.NORMAL, 'the console closed the page') };
}

/** Forwards one HTTP request; answers 502 with the reason when the device cannot be reached. */
export async function proxyHttp(req: IncomingMessage, res: ServerResponse, target: DeviceWebTarget & { rest: string }, open: OpenDeviceStream, log: Logger): Promise<void> {
  let conn: { socket: Duplex; end: () => void };
  try {
    conn = await connectToDevice(open);
  } catch (err) {
    req.resume();
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(`${(err as Error).message}\n`);
    return;
  }
  const upstream = request({
    method: req.method,
    path: target.rest,
    headers: deviceRequestHeaders(req, target.prefix, false),
    createConnection: () => conn.socket as never,
  });
  const deadline = setTimeout(() => {
    if (!res.headersSent) res.writeHead(504, { 'content-type': 'text/plain; charset=utf-8' }).end(`${target.deviceId}/${target.service} did not answer within ${DEVICE_RESPONSE_TIMEOUT_MS / 1000} s\n`);
    upstream.destroy();
    conn.end();
  }, DEVICE_RESPONSE_TIMEOUT_MS);
  res.on('close', () => {
    clearTimeout(deadline);
    if (!res.writableFinished) {
      upstream.destroy();
      conn.end();
    }
  });
  upstream.on('response', (r) => {
    clearTimeout(deadline);
    res.writeHead(r.statusCode ?? 502, browserResponseHeaders(r.headers, target.prefix));
    r.pipe(res);
  });
  upstream.on('error', (err) => {
    clearTimeout(deadline);
    log.debug({ device: target.deviceId, service: target.service, err: err.message }, 'device web request failed');
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' }).end(`${target.deviceId}/${target.service} did not answer: ${err.message}\n`);
    else res.destroy();
  });
  req.pipe(upstream);
}

/**
 * Forwards a WebSocket (or any Upgrade) request: the head is written to the device as it came (our
 * cookie removed), then bytes flow both ways until either side ends. Returns a function that cuts it.
 */
export async function proxyUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: DeviceWebTarget & { rest: string }, open: OpenDeviceStream): Promise<() => void> {
  const conn = await connectToDevice(open);
  const headers = deviceRequestHeaders(req, target.prefix, true);
  let text = `${req.method} ${target.rest} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(headers)) for (const one of Array.isArray(v) ? v : [v]) text += `${k}: ${String(one)}\r\n`;
  text += '\r\n';
  if (Buffer.byteLength(text) > MAX_UPGRADE_HEAD_BYTES) {
    conn.end();
    refuseOnSocket(socket, 431);
    return () => undefined;
  }
  conn.socket.write(text);
  if (head.length) conn.socket.write(head);
  socket.pipe(conn.socket);
  conn.socket.pipe(socket);
  const cut = (): void => {
    socket.destroy();
    conn.socket.destroy();
  };
  socket.on('error', cut);
  conn.socket.on('error', cut);
  socket.on('close', () => conn.socket.destroy());
  conn.socket.on('close', () => socket.destroy());
  return cut;
}
