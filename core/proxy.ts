import { Agent as HttpsAgent, type AgentOptions } from 'node:https';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { DevstreamsError } from '../wire';

/**
 * HTTP CONNECT proxies for every outbound TLS connection (control channel, streams, service REST).
 *
 * Why our own ~100 lines rather than https-proxy-agent: we need the same tunnel for three clients
 * (an https.Agent for REST and ws, and a raw socket for MQTT over TLS on 8883, which mqtt.js takes as
 * `socket`), and we want the proxy's own refusal (403, 407, 502) turned into a sentence that names the
 * proxy without its password. Node's http.request does the CONNECT handshake for us; we only hand the
 * tunneled socket to tls.connect.
 */
export const PROXY_CONNECT_TIMEOUT_MS = 30_000;

export interface ProxySettings {
  /** `http://host:port`, never with the credentials: safe to log. */
  display: string;
  host: string;
  port: number;
  /** `Basic …` when the proxy URL had user:password. */
  authorization?: string;
}

/** Parses `http://[user:pass@]host[:port]`; throws EUSAGE-free DevstreamsError('ECONFIG') on anything else. */
export function parseProxyUrl(text: string): ProxySettings {
  let url: URL;
  try {
    url = new URL(text.includes('://') ? text : `http://${text}`);
  } catch {
    throw new DevstreamsError('ECONFIG', 'proxy is not a URL like http://[user:password@]host:port');
  }
  if (url.protocol !== 'http:') throw new DevstreamsError('ECONFIG', `proxy scheme ${url.protocol} is not supported (only http:// CONNECT proxies)`);
  if (!url.hostname) throw new DevstreamsError('ECONFIG', 'proxy URL names no host');
  const port = url.port === '' ? 80 : Number(url.port);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const settings: ProxySettings = { display: `http://${url.host}`, host, port };
  if (url.username || url.password) {
    const user = decodeURIComponent(url.username);
    const pass = decodeURIComponent(url.password);
    settings.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
  }
  return settings;
}

/** Returns why a proxy setting is invalid (for config validation), or undefined. */
export function proxyUrlProblem(text: string): string | undefined {
  if (text === 'none') return undefined;
  try {
    parseProxyUrl(text);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

function noProxyMatches(noProxy: string, host: string, port: number): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  for (const raw of noProxy.split(/[,\s]+/)) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return true;
    const m = /^(.*?)(?::(\d+))?$/.exec(entry)!;
    const pattern = m[1]!.replace(/^\*?\./, '.');
    if (m[2] && Number(m[2]) !== port) continue;
    if (pattern.startsWith('.') ? h.endsWith(pattern) || h === pattern.slice(1) : h === pattern) return true;
  }
  return false;
}

/**
 * The proxy to use for `host:port`: `configured` (from config; `none` disables proxies), else
 * HTTPS_PROXY / https_proxy unless NO_PROXY / no_proxy exempts the host. Undefined: connect directly.
 */
export function proxyFor(host: string, port: number, configured?: string, env: NodeJS.ProcessEnv = process.env): ProxySettings | undefined {
  if (configured === 'none') return undefined;
  if (configured) return parseProxyUrl(configured);
  const fromEnv = env.HTTPS_PROXY ?? env.https_proxy;
  if (!fromEnv) return undefined;
  const noProxy = env.NO_PROXY ?? env.no_proxy ?? '';
  if (noProxyMatches(noProxy, host, port)) return undefined;
  return parseProxyUrl(fromEnv);
}

function proxyRefusal(proxy: ProxySettings, target: string, res: IncomingMessage): DevstreamsError {
  const status = `${res.statusCode ?? 0} ${res.statusMessage ?? ''}`.trim();
  // 407 is the standard answer; tinyproxy says 401 when the credentials are wrong.
  if (res.statusCode === 407 || res.statusCode === 401) {
    return new DevstreamsError(
      'EPROXY',
      `the proxy ${proxy.display} wants credentials (HTTP ${status}): ${proxy.authorization ? 'the user name or password in the proxy URL was not accepted' : 'put them in the proxy URL as http://user:password@host:port'}`,
    );
  }
  if (res.statusCode === 502 || res.statusCode === 503 || res.statusCode === 504 || res.statusCode === 500) {
    return new DevstreamsError('EPROXY', `the proxy ${proxy.display} could not reach ${target} (HTTP ${status}): the name does not resolve or the host is unreachable from the proxy`);
  }
  return new DevstreamsError('EPROXY', `the proxy ${proxy.display} refused to connect to ${target} (HTTP ${status}): ask its administrator to allow CONNECT to that host and port`);
}

/** Opens a CONNECT tunnel to `host:port` through the proxy; resolves with the raw socket. */
export function dialThroughProxy(proxy: ProxySettings, host: string, port: number, timeoutMs = PROXY_CONNECT_TIMEOUT_MS): Promise<Socket> {
  const target = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: proxy.host,
      port: proxy.port,
      method: 'CONNECT',
      path: target,
      headers: { host: target, ...(proxy.authorization ? { 'proxy-authorization': proxy.authorization } : {}) },
      agent: false,
      timeout: timeoutMs,
    });
    req.once('connect', (res, socket, head) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(proxyRefusal(proxy, target, res));
        return;
      }
      if (head.length > 0) socket.unshift(head);
      socket.setTimeout(0);
      resolve(socket);
    });
    // A proxy that answers a CONNECT with a plain response (no upgrade) lands here.
    req.once('response', (res) => {
      res.resume();
      reject(proxyRefusal(proxy, target, res));
    });
    req.once('timeout', () => req.destroy(Object.assign(new Error(`the proxy ${proxy.display} did not answer CONNECT in time`), { code: 'ETIMEDOUT' })));
    req.once('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? '';
      if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
        reject(new DevstreamsError('EPROXY', `cannot resolve the proxy's host name in ${proxy.display} (DNS: ${code})`, { cause: err }));
      } else if (code === 'ECONNREFUSED') {
        reject(new DevstreamsError('EPROXY', `cannot reach the proxy ${proxy.display}: connection refused`, { cause: err }));
      } else {
        reject(new DevstreamsError('EPROXY', `proxy ${proxy.display}: ${err.message}`, { cause: err }));
      }
    });
    req.end();
  });
}

/**
 * An https.Agent whose connections go through the proxy: give it to https.request or to ws
 * (`agent` option), or to mqtt.js as `wsOptions.agent`. Node's Agent accepts an asynchronous
 * createConnection (callback form), which is what lets the CONNECT handshake happen first.
 */
export class ProxyAgent extends HttpsAgent {
  constructor(
    readonly proxy: ProxySettings,
    options: AgentOptions = {},
  ) {
    super(options);
  }

  override createConnection(requestOptions: RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): Duplex | undefined {
    const options = requestOptions as ConnectionOptions & { host?: string; port?: number | string };
    const host = String(options.host ?? 'localhost').replace(/^\[|\]$/g, '');
    const port = Number(options.port ?? 443);
    dialThroughProxy(this.proxy, host, port).then(
      (raw) => {
        // `host` stays: with a ready socket tls.connect does not dial, but it checks the certificate against it.
        const { path: _path, ...tlsOptions } = options as ConnectionOptions & { path?: string };
        const socket = tlsConnect({ ...tlsOptions, host, socket: raw, ...(options.servername || /^[\d.:]+$/.test(host) ? {} : { servername: host }) });
        callback?.(null, socket);
      },
      // The callback's type wants a stream even on error; Node ignores it then.
      (err: Error) => callback?.(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}
