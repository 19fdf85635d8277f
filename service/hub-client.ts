import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import type { WebSocket } from 'ws';
import {
  API_VERSION,
  DEVICES_PATH,
  DevstreamsError,
  isDevstreamsError,
  HEADER,
  SAS_LIFETIME_S,
  STREAM_HANDSHAKE_TIMEOUT_S,
  createSasToken,
  parseIsAccepted,
  splitHostName,
  streamRequestPath,
  type ServiceConnectionString,
} from '../wire';
import { describeConnectError, isCertificateError } from '../core/connect-errors';
import type { DeviceView } from '../hub/devices';
import { dialStream } from '../core/stream-dial';
import { ProxyAgent, proxyFor } from '../core/proxy';
import { clockSkewSentence, describePeerCertificate } from '../core/diagnose';
import { terminalSafe } from '../core/terminal-text';

/** A sentence about this machine's clock when it is far from the hub's (its HTTP Date header), else undefined. */
export function clockSkewMessage(hubDate: string | string[] | undefined, nowMs = Date.now()): string | undefined {
  const hubMs = typeof hubDate === 'string' ? Date.parse(hubDate) : NaN;
  return Number.isFinite(hubMs) ? clockSkewSentence(hubMs - nowMs, nowMs) : undefined;
}

/** How long `GET /devices` may take before the hub counts as not answering. */
const LIST_TIMEOUT_MS = 30_000;

interface HubResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** The `message` of IoT Hub's JSON error body, if that is what the body is. */
function errorMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown; Message?: unknown };
    const m = parsed.message ?? parsed.Message;
    return typeof m === 'string' ? m : '';
  } catch {
    return '';
  }
}

export interface AcceptedStream {
  url: string;
  authToken: string;
}

export interface HubClientOptions {
  service: ServiceConnectionString;
  caPem?: Buffer;
  caFile?: string;
  /** HTTP CONNECT proxy URL or `none`; HTTPS_PROXY/NO_PROXY otherwise (REST and streams alike). */
  proxy?: string;
  /** The clock tokens are signed with (injected in tests to play a machine with a wrong clock). */
  now?: () => number;
}

/**
 * The service side of IoT Hub's device streams: asks the hub for a stream to a device and dials the
 * streaming URL it gets back. Every failure becomes a DevstreamsError with a stable code and a
 * message a person can act on.
 */
export class HubClient {
  // Keep-alive: a busy `connect` port makes many requests; reuse the TLS connection.
  private readonly agent: HttpsAgent;
  private readonly host: string;
  private readonly port: number;

  constructor(private readonly opts: HubClientOptions) {
    const { host, port } = splitHostName(opts.service.hostName);
    this.host = host;
    this.port = port;
    const agentOptions = { keepAlive: true, maxSockets: 64, ...(opts.caPem ? { ca: opts.caPem } : {}) };
    const proxy = proxyFor(host, port, opts.proxy);
    this.agent = proxy ? new ProxyAgent(proxy, agentOptions) : new HttpsAgent(agentOptions);
  }

  private authorization(): string {
    const s = this.opts.service;
    return createSasToken({
      resource: s.hostName,
      key: s.sharedAccessKey,
      keyName: s.sharedAccessKeyName,
      expiresAt: Math.floor((this.opts.now ?? Date.now)() / 1000) + SAS_LIFETIME_S,
    });
  }

  /**
   * One HTTPS request to the hub's service API; network and TLS failures become DevstreamsErrors.
   * A kept-alive connection the hub closed just as we reused it fails before the request reached it
   * (ECONNRESET/EPIPE on a reused socket): that one case is sent again, once, on a new connection,
   * as Node's http documentation advises.
   */
  private call(method: 'GET' | 'POST', path: string, headers: Record<string, string>, timeoutMs: number, signal?: AbortSignal, retried = false): Promise<HubResponse> {
    return new Promise<HubResponse>((resolve, reject) => {
      const req = httpsRequest(
        { host: this.host, port: this.port, method, path, agent: this.agent, headers: { authorization: this.authorization(), ...headers }, timeout: timeoutMs, ...(signal ? { signal } : {}) },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error('the hub did not answer in time'), { code: 'ETIMEDOUT' })));
      // networkError is async (it may look at the certificate once more): reject with its result.
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (!retried && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
          this.call(method, path, headers, timeoutMs, signal, true).then(resolve, reject);
          return;
        }
        void this.networkError(err).then(reject, reject);
      });
      req.end();
    });
  }

  /** A 401: the clock when it is far from the hub's, else the credentials. */
  private refusedCredentials(res: HubResponse, message: string): DevstreamsError {
    const skew = clockSkewMessage(res.headers.date, (this.opts.now ?? Date.now)());
    const because = message ? ` (${message})` : '';
    if (skew) return new DevstreamsError('ECLOCK_SKEW', `the hub refused the service credentials${because}: ${skew}`);
    return new DevstreamsError('EUNAUTHORIZED', `the hub refused the service credentials${because}: check DEVSTREAMS_CONNECTION_STRING`);
  }

  /** `signal` abandons the request (the caller's own setup deadline): its connection is freed at once. */
  async requestStream(deviceId: string, streamName: string, signal?: AbortSignal): Promise<AcceptedStream> {
    const res = await this.call(
      'POST',
      streamRequestPath(deviceId, streamName),
      {
        [HEADER.connectTimeout]: String(STREAM_HANDSHAKE_TIMEOUT_S),
        [HEADER.responseTimeout]: String(STREAM_HANDSHAKE_TIMEOUT_S),
        'content-length': '0',
      },
      (STREAM_HANDSHAKE_TIMEOUT_S + 10) * 1000,
      signal,
    );
    const { statusCode, headers, body } = res;
    if (statusCode === 200) {
      if (!parseIsAccepted(headers[HEADER.isAccepted])) {
        // Our agent says why (x-devstreams-refusal); an IoT Hub SDK device answers 400 with no payload.
        const why = headers[HEADER.refusal];
        throw new DevstreamsError(
          'EDEVICE_REFUSED',
          typeof why === 'string' && why
            ? `device "${deviceId}" refused the stream to service "${streamName}": ${terminalSafe(why)}`
            : `device "${deviceId}" refused the stream to service "${streamName}": the device refused the stream (it gave no reason)`,
        );
      }
      const url = headers[HEADER.url];
      const authToken = headers[HEADER.authToken];
      if (typeof url !== 'string' || typeof authToken !== 'string') {
        throw new DevstreamsError('EHUB_ERROR', 'the hub accepted the stream but sent no streaming URL or token');
      }
      return { url, authToken };
    }
    let errorCode = 0;
    let message = body.slice(0, 300);
    try {
      const parsed = JSON.parse(body) as { errorCode?: number; message?: string; Message?: string };
      errorCode = Number(parsed.errorCode ?? 0);
      message = parsed.message ?? parsed.Message ?? message;
    } catch {
      // not IoT Hub's JSON error body; keep the text
    }
    switch (statusCode) {
      case 401:
        throw this.refusedCredentials(res, message);
      case 404:
        if (errorCode === 404001) throw new DevstreamsError('EUNKNOWN_DEVICE', `unknown device "${deviceId}": ${message}`);
        throw new DevstreamsError('EDEVICE_OFFLINE', `device "${deviceId}" is offline: ${message}`);
      case 429: {
        const retry = headers['retry-after'];
        throw new DevstreamsError(
          'ETHROTTLED',
          `the hub is rate-limiting stream requests (${message})${typeof retry === 'string' ? `: retry in ${retry} s` : ': retry in a few seconds'}`,
        );
      }
      case 504:
        throw new DevstreamsError('EDEVICE_TIMEOUT', `device "${deviceId}" did not answer in time: ${message}`);
      default:
        throw new DevstreamsError('EHUB_ERROR', `the hub answered ${statusCode}${errorCode ? ` (${errorCode})` : ''}: ${message}`);
    }
  }

  private async networkError(err: Error, at?: { host: string; port: number }): Promise<DevstreamsError> {
    if (isDevstreamsError(err)) return err; // already a sentence (proxy refusals)
    let message = describeConnectError(err, { hub: at ? `${at.host}:${at.port}` : this.opts.service.hostName, caFile: this.opts.caFile });
    if (!isCertificateError(err)) return new DevstreamsError('EHUB_UNREACHABLE', message, { cause: err });
    // Name the certificate that was not trusted: one more look at what the server presents.
    const shown = await describePeerCertificate({ ...(at ?? { host: this.host, port: this.port }), proxy: this.opts.proxy });
    if (shown) message += `; it presented ${shown}`;
    return new DevstreamsError('ECERT_UNTRUSTED', message, { cause: err });
  }

  /** Dials an accepted stream; resolves once the WebSocket is open (and paused, for the tunnel to take). */
  openStream(stream: AcceptedStream): Promise<WebSocket> {
    const ws = dialStream(stream.url, stream.authToken, this.opts.caPem, { proxy: this.opts.proxy });
    return new Promise((resolve, reject) => {
      ws.once('open', () => {
        ws.pause();
        resolve(ws);
      });
      ws.once('unexpected-response', (_req, res) => {
        reject(new DevstreamsError('EHUB_ERROR', `the streaming endpoint refused the connection (HTTP ${res.statusCode})`));
        ws.terminate();
      });
      ws.once('error', (err) => {
        const { hostname, port } = new URL(stream.url);
        void this.networkError(err, { host: hostname.replace(/^\[|\]$/g, ''), port: port === '' ? 443 : Number(port) }).then(reject, reject);
      });
    });
  }

  /** `GET /devices`: every device with its connection state and last health (our hub; IoT Hub gives no health). */
  async listDevices(timeoutMs = LIST_TIMEOUT_MS): Promise<DeviceView[]> {
    const res = await this.call('GET', `${DEVICES_PATH}?api-version=${API_VERSION}`, {}, timeoutMs);
    const { statusCode, body } = res;
    if (statusCode === 401) throw this.refusedCredentials(res, errorMessage(body));
    if (statusCode !== 200) throw new DevstreamsError('EHUB_ERROR', `the hub answered ${statusCode} to GET ${DEVICES_PATH}: ${body.slice(0, 200)}`);
    try {
      return JSON.parse(body) as DeviceView[];
    } catch {
      throw new DevstreamsError('EHUB_ERROR', `the hub's device list is not JSON`);
    }
  }

  close(): void {
    this.agent.destroy();
  }
}
