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

/** A sentence about this machine's clock when it is far from the hub's (its HTTP Date header), else undefined. */
export function clockSkewMessage(hubDate: string | string[] | undefined, nowMs = Date.now()): string | undefined {
  const hubMs = typeof hubDate === 'string' ? Date.parse(hubDate) : NaN;
  return Number.isFinite(hubMs) ? clockSkewSentence(hubMs - nowMs, nowMs) : undefined;
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

  async requestStream(deviceId: string, streamName: string): Promise<AcceptedStream> {
    const { statusCode, headers, body } = await new Promise<{ statusCode: number; headers: Record<string, string | string[] | undefined>; body: string }>(
      (resolve, reject) => {
        const req = httpsRequest(
          {
            host: this.host,
            port: this.port,
            method: 'POST',
            path: streamRequestPath(deviceId, streamName),
            agent: this.agent,
            headers: {
              authorization: this.authorization(),
              [HEADER.connectTimeout]: String(STREAM_HANDSHAKE_TIMEOUT_S),
              [HEADER.responseTimeout]: String(STREAM_HANDSHAKE_TIMEOUT_S),
              'content-length': '0',
            },
            timeout: (STREAM_HANDSHAKE_TIMEOUT_S + 10) * 1000,
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
            res.on('error', reject);
          },
        );
        req.on('timeout', () => req.destroy(Object.assign(new Error('the hub did not answer in time'), { code: 'ETIMEDOUT' })));
        req.on('error', (err) => void this.networkError(err).then(reject));
        req.end();
      },
    );
    if (statusCode === 200) {
      if (!parseIsAccepted(headers[HEADER.isAccepted])) {
        const why = headers[HEADER.refusal];
        throw new DevstreamsError(
          'EDEVICE_REFUSED',
          `device "${deviceId}" refused the stream to service "${streamName}": ${typeof why === 'string' ? why : 'it is not a service the device allows'}`,
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
      case 401: {
        const skew = clockSkewMessage(headers.date, (this.opts.now ?? Date.now)());
        if (skew) throw new DevstreamsError('ECLOCK_SKEW', `the hub refused the service credentials (${message}): ${skew}`);
        throw new DevstreamsError('EUNAUTHORIZED', `the hub refused the service credentials (${message}): check DEVSTREAMS_CONNECTION_STRING`);
      }
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
        void this.networkError(err, { host: hostname.replace(/^\[|\]$/g, ''), port: port === '' ? 443 : Number(port) }).then(reject);
      });
    });
  }

  /** `GET /devices`: every device with its connection state and last health (our hub; IoT Hub gives no health). */
  async listDevices(): Promise<DeviceView[]> {
    const { statusCode, body } = await new Promise<{ statusCode: number; body: string }>((resolve, reject) => {
      const req = httpsRequest(
        { host: this.host, port: this.port, method: 'GET', path: `${DEVICES_PATH}?api-version=${API_VERSION}`, agent: this.agent, headers: { authorization: this.authorization() }, timeout: 30_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error('the hub did not answer in time'), { code: 'ETIMEDOUT' })));
      req.on('error', (err) => reject(this.networkError(err)));
      req.end();
    });
    if (statusCode === 401) throw new DevstreamsError('EUNAUTHORIZED', 'the hub refused the service credentials: check DEVSTREAMS_CONNECTION_STRING');
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
