import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { formatHostPort } from '../core/address';
import type { Logger } from '../core/log';
import { printableAscii } from '../core/terminal-text';
import {
  DEVICES_PATH,
  HEADER,
  HUB_ERROR,
  STREAM_HANDSHAKE_TIMEOUT_S,
  hubErrorBody,
  isServiceName,
  SERVICE_NAME_RULE,
  parseStreamRequestPath,
  assertSasScope,
  splitHostName,
  type HubErrorName,
} from '../wire';
import type { ControlPlane } from './control-plane';
import type { DeviceHealth } from './devices';
import type { HubSecrets } from './data-dir';
import type { DeviceRegistry } from './device-registry';
import { operatorAllows, type Operator, type OperatorStore } from './operators';
import type { StreamAudit } from './stream-audit';
import { newStreamId, signStreamToken } from './stream-tokens';
import { DEFAULT_DEVICE_STREAM_LIMIT, DEFAULT_SERVICE_STREAM_LIMIT, RateLimiter, type RateLimit } from './rate-limit';
import { BRIDGE_PATH_PREFIX } from './streaming-endpoint';
import { HTTP_MAX_BODY_BYTES, discardBody, requestPath } from './http-guards';

type Operation =
  | { kind: 'healthz'; method: 'GET' }
  | { kind: 'devices'; method: 'GET' }
  | { kind: 'stream'; method: 'POST'; route: ReturnType<typeof parseStreamRequestPath> };

/** Request text for a log or error message: printable ASCII, bounded. */
const printable = (text: string): string => printableAscii(text, 100);

export interface OpenStreamOptions {
  trackingId?: string;
  connectTimeoutS?: number;
  responseTimeoutS?: number;
  /** Aborting stops the wait for the device's answer. */
  signal?: AbortSignal;
  /**
   * Who asks: the operator's name (the service API's verified SharedAccessKeyName, the console's
   * signed-in operator). Checked against the operator store as of now (removed: refused; limited to
   * devices or services: enforced), carried in the stream tokens and to the device (`$op`), audited.
   */
  operator?: string;
  /** The operator's address, for the audit line. */
  remote?: string;
}

/** The device's answer to a stream request, or why there was none (an IoT Hub error name). */
export type StreamGrant =
  | { accepted: true; streamId: string; url: string; serviceToken: string }
  | { accepted: false; reason?: string }
  | { error: HubErrorName; message: string };

/**
 * A streaming URL in IoT Hub's form, always with its port (`wss://host:443/bridges/…`): IoT Hub's C
 * SDK dials the URL exactly as given and does not default `wss` to 443.
 */
export function streamingUrl(streamingHost: string, streamId: string): string {
  const { host, port } = splitHostName(streamingHost);
  return `wss://${formatHostPort(host, port)}${BRIDGE_PATH_PREFIX}${streamId}`;
}

interface Waiter {
  resolve: (r: { status: number; payload: Buffer } | 'offline' | 'timeout') => void;
}

/** Device refusal reasons travel back to the service as a header: keep them short and printable. */
function refusalReason(payload: Buffer): string | undefined {
  if (payload.length === 0 || payload.length > 1024) return undefined;
  try {
    const body = JSON.parse(payload.toString('utf8')) as { reason?: unknown };
    if (typeof body.reason !== 'string') return undefined;
    return printableAscii(body.reason, 200);
  } catch {
    return undefined;
  }
}

function timeoutHeader(req: IncomingMessage, name: string): number {
  const v = Number(req.headers[name]);
  return Number.isFinite(v) && v > 0 ? Math.min(v, STREAM_HANDSHAKE_TIMEOUT_S) : STREAM_HANDSHAKE_TIMEOUT_S;
}

/**
 * The service REST API: `POST /twins/{deviceId}/streams/{streamName}` as IoT Hub serves it. Asks the
 * device over MQTT, waits for its answer and hands the service the streaming URL and its token.
 */
export class ServiceApi {
  private readonly waiters = new Map<string, Waiter>();
  private nextRequestId = 1;
  private readonly deviceLimiter: RateLimiter;
  private readonly serviceLimiter: RateLimiter;

  constructor(
    private readonly deps: {
      registry: DeviceRegistry;
      broker: ControlPlane;
      /** Prefixed to request ids (`{instance}-`) so that hub instances sharing a broker never collide. */
      requestIdPrefix?: string;
      secrets: HubSecrets;
      log: Logger;
      /** `host:port` the streaming URL names. */
      streamingHost: () => string;
      /** Names this hub answers to: a service token's `sr` must name one of them. */
      hostNames: () => readonly string[];
      /** Stream requests allowed per device and per service credential. */
      rateLimits?: { device?: RateLimit; service?: RateLimit };
      /** Online state and last health per device, for `GET /devices`. */
      devices?: DeviceHealth;
      /** Who may ask for streams: each operator's key and limits, followed live. */
      operators: OperatorStore;
      /** One audit line per stream request the hub did not hand on (accepted ones: the streaming endpoint). */
      audit?: StreamAudit;
      /** A request on this connection carried a valid service credential (it leaves the pre-auth caps). */
      onAuthorized?: (socket: IncomingMessage['socket']) => void;
    },
  ) {
    this.deviceLimiter = new RateLimiter(deps.rateLimits?.device ?? DEFAULT_DEVICE_STREAM_LIMIT);
    this.serviceLimiter = new RateLimiter(deps.rateLimits?.service ?? DEFAULT_SERVICE_STREAM_LIMIT);
    deps.broker.on('stream-response', (deviceId, status, requestId, payload) => {
      const w = this.waiters.get(`${deviceId}\n${requestId}`);
      if (w) w.resolve({ status, payload });
    });
    deps.broker.on('offline', (deviceId) => {
      for (const [key, w] of this.waiters) if (key.startsWith(`${deviceId}\n`)) w.resolve('offline');
    });
  }

  private fail(res: ServerResponse, name: HubErrorName, message: string, trackingId: string): void {
    if (res.headersSent) return;
    const body = JSON.stringify(hubErrorBody(name, message, trackingId));
    res.writeHead(HUB_ERROR[name].status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  /** One request; never throws: anything malformed gets an IoT Hub-shaped 4xx and a debug line. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const trackingId = randomUUID();
    const refuse = (name: HubErrorName, message: string): void => {
      this.deps.log.debug({ method: req.method, status: HUB_ERROR[name].status, remote: req.socket.remoteAddress, trackingId }, `request refused: ${message}`);
      this.fail(res, name, message, trackingId);
    };
    const path = requestPath(req.url);
    if (path === undefined) return refuse('ArgumentInvalid', 'malformed request target');
    const op = this.operation(path);
    if (!op) return refuse('NotFound', `no such path: ${printable(path)}`);
    if (req.method !== op.method) {
      res.setHeader('allow', op.method);
      return refuse('MethodNotAllowed', `${printable(req.method ?? '')} is not allowed here (${op.method})`);
    }
    if (!discardBody(req, res, () => refuse('MessageTooLarge', `request body over ${HTTP_MAX_BODY_BYTES} bytes`))) return;
    if (op.kind === 'healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    // A token scoped to one device (sr={host}/devices/{id}) covers that device's stream requests only.
    const target = op.kind === 'devices' ? 'devices' : op.route ? `devices/${op.route.deviceId}` : '';
    const who = this.authorize(req.headers.authorization, target);
    if ('refused' in who) return this.fail(res, 'IotHubUnauthorizedAccess', who.refused, trackingId);
    this.deps.onAuthorized?.(req.socket);
    if (op.kind === 'devices') {
      // An operator limited to some devices sees only those.
      const body = JSON.stringify(this.deps.devices!.list().filter((d) => operatorAllows(who.operator, d.deviceId)));
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
    const route = op.route;
    if (route === null) return refuse('ArgumentInvalid', 'malformed device id or stream name in the path');
    // IoT Hub modules do not exist here: a module stream must not reach the device as if it were its own.
    if (route.moduleId !== undefined) return refuse('ArgumentInvalid', 'module streams are not supported by this hub: request the stream for the device (/twins/{deviceId}/streams/{name})');
    const operator = who.operator.name;
    const remote = req.socket.remoteAddress;
    const throttled = this.throttle(operator, route.deviceId);
    if (throttled) {
      res.setHeader('retry-after', String(throttled.retryAfterS));
      this.deps.log.warn({ device: route.deviceId, limit: throttled.who, trackingId }, 'stream request throttled');
      const message = `too many stream requests ${throttled.who}: retry in ${throttled.retryAfterS} s`;
      this.deps.audit?.record({ operator, remote, device: route.deviceId, service: route.streamName, outcome: 'denied', reason: message });
      return this.fail(res, 'ThrottlingException', message, trackingId);
    }
    this.requestStream(req, res, route.deviceId, route.streamName, { trackingId, operator, ...(remote ? { remote } : {}) }).catch((err: unknown) => {
      this.deps.log.error({ err, trackingId }, 'stream request failed');
      if (!res.headersSent) this.fail(res, 'ServerError', 'internal error', trackingId);
    });
  }

  /** Which operation a path names, with the one method it serves. */
  private operation(path: string): Operation | undefined {
    if (path === '/healthz') return { kind: 'healthz', method: 'GET' };
    if (path === DEVICES_PATH && this.deps.devices) return { kind: 'devices', method: 'GET' };
    if (/^\/twins\/[^/]+(?:\/modules\/[^/]+)?\/streams\/[^/]+\/?$/.test(path)) return { kind: 'stream', method: 'POST', route: parseStreamRequestPath(path) };
    return undefined;
  }

  /** Takes a token from the operator's and the device's bucket; says which one ran dry. The console asks too. */
  throttle(operator: string, deviceId: string): { who: string; retryAfterS: number } | undefined {
    const forService = this.serviceLimiter.take(operator);
    if (forService) return { who: `for service credential "${operator}"`, retryAfterS: forService };
    // Only registered devices get a bucket: unknown ids must not grow the map.
    if (!this.known(deviceId)) return undefined;
    const forDevice = this.deviceLimiter.take(deviceId);
    if (forDevice) return { who: `to device "${deviceId}"`, retryAfterS: forDevice };
    return undefined;
  }

  /** In the registry, or (external broker) announced on the broker, which then is the registry. */
  private known(deviceId: string): boolean {
    return Boolean(this.deps.registry.get(deviceId)) || (this.deps.broker.knows?.(deviceId) ?? false);
  }

  /** The operator whose credential this is, when it is good for `target` (`devices`, `devices/{id}`); or why not. */
  private authorize(header: string | undefined, target: string): { operator: Operator } | { refused: string } {
    return this.deps.operators.verify(header, (token) => assertSasScope(token, this.deps.hostNames(), target));
  }

  private async requestStream(
    req: IncomingMessage,
    res: ServerResponse,
    deviceId: string,
    streamName: string,
    ask: { trackingId: string; operator: string; remote?: string },
  ): Promise<void> {
    const { trackingId } = ask;
    const controller = new AbortController();
    // A service that gives up (closes its request) stops the wait.
    res.on('close', () => controller.abort());
    const grant = await this.openStream(deviceId, streamName, {
      ...ask,
      connectTimeoutS: timeoutHeader(req, HEADER.connectTimeout),
      responseTimeoutS: timeoutHeader(req, HEADER.responseTimeout),
      signal: controller.signal,
    });
    if (res.destroyed) return;
    if ('error' in grant) return this.fail(res, grant.error, grant.message, trackingId);
    const headers: Record<string, string> = { [HEADER.isAccepted]: grant.accepted ? 'True' : 'False', 'content-length': '0' };
    if (grant.accepted) {
      headers[HEADER.url] = grant.url;
      headers[HEADER.authToken] = grant.serviceToken;
    } else if (grant.reason) {
      headers[HEADER.refusal] = grant.reason;
    }
    res.writeHead(200, headers).end();
  }

  /**
   * Asks the device for a stream and waits for its answer: the service API's request, and the one
   * the hub's console makes on an operator's behalf (hub/console/). Never throws.
   */
  async openStream(deviceId: string, streamName: string, o: OpenStreamOptions = {}): Promise<StreamGrant> {
    const grant = await this.askDevice(deviceId, streamName, o);
    // Accepted streams are audited by the streaming endpoint when they end.
    if (!('accepted' in grant && grant.accepted)) {
      const refused = 'accepted' in grant;
      this.deps.audit?.record({
        operator: o.operator,
        remote: o.remote,
        device: deviceId,
        service: streamName,
        outcome: refused ? 'refused' : grant.error === 'GatewayTimeout' ? 'timeout' : 'denied',
        reason: refused ? (grant.reason ?? 'refused by the device') : grant.message,
      });
    }
    return grant;
  }

  /** Why `operator` may not have this stream now (removed since it signed its request, or limited), or undefined. */
  private operatorRefusal(operator: string | undefined, deviceId: string, streamName: string): string | undefined {
    if (operator === undefined) return undefined;
    const op = this.deps.operators.get(operator);
    if (!op) return `operator "${operator}" was removed`;
    if (!operatorAllows(op, deviceId)) return `operator "${operator}" may not reach device "${deviceId}"`;
    if (!operatorAllows(op, deviceId, streamName)) return `operator "${operator}" may not use service "${streamName}"`;
    return undefined;
  }

  private async askDevice(deviceId: string, streamName: string, o: OpenStreamOptions): Promise<StreamGrant> {
    const { broker, log, secrets } = this.deps;
    const trackingId = o.trackingId ?? randomUUID();
    const ctx = { device: deviceId, service: streamName, trackingId, ...(o.operator ? { operator: o.operator } : {}) };
    // The name becomes a topic level on the broker: `#` or `+` there drops the hub's connection (fleet).
    if (!isServiceName(streamName)) return { error: 'ArgumentInvalid', message: `stream name "${printable(streamName)}" is invalid: ${SERVICE_NAME_RULE}` };
    const notAllowed = this.operatorRefusal(o.operator, deviceId, streamName);
    if (notAllowed) return { error: 'IotHubUnauthorizedAccess', message: notAllowed };
    if (!this.known(deviceId)) return { error: 'DeviceNotFound', message: `device "${deviceId}" is not registered with this hub` };
    if (this.deps.registry.get(deviceId)?.status === 'disabled') return { error: 'DeviceNotOnline', message: `device "${deviceId}" is disabled` };
    if (!broker.isOnline(deviceId)) return { error: 'DeviceNotOnline', message: `device "${deviceId}" is not connected to the hub` };

    const connectTimeoutS = o.connectTimeoutS ?? STREAM_HANDSHAKE_TIMEOUT_S;
    const responseTimeoutS = o.responseTimeoutS ?? STREAM_HANDSHAKE_TIMEOUT_S;
    const streamId = newStreamId();
    const requestId = `${this.deps.requestIdPrefix ?? ''}${this.nextRequestId++}`;
    const exp = Date.now() + connectTimeoutS * 1000;
    const key = secrets.stream_signing_key;
    const about = { ...(o.operator ? { operator: o.operator } : {}), service: streamName };
    const deviceToken = signStreamToken(key, { streamId, side: 'device', deviceId, exp, ...about });
    const serviceToken = signStreamToken(key, { streamId, side: 'service', deviceId, exp, ...about });
    const streamUrl = streamingUrl(this.deps.streamingHost(), streamId);

    const waitKey = `${deviceId}\n${requestId}`;
    let timer: NodeJS.Timeout | undefined;
    const answer = new Promise<{ status: number; payload: Buffer } | 'offline' | 'timeout'>((resolve) => {
      this.waiters.set(waitKey, { resolve });
      timer = setTimeout(() => resolve('timeout'), responseTimeoutS * 1000);
    });
    const onAbort = (): void => this.waiters.get(waitKey)?.resolve('timeout');
    o.signal?.addEventListener('abort', onAbort, { once: true });
    if (!broker.sendStreamRequest(deviceId, { streamName, requestId, url: streamUrl, authToken: deviceToken, ...(o.operator ? { operator: o.operator } : {}) })) {
      this.waiters.delete(waitKey);
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      return { error: 'DeviceNotOnline', message: `device "${deviceId}" is connected but not listening for stream requests` };
    }
    const result = await answer;
    this.waiters.delete(waitKey);
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', onAbort);
    if (result === 'timeout') {
      if (!o.signal?.aborted) log.warn(ctx, 'device did not answer the stream request in time');
      return { error: 'GatewayTimeout', message: 'Timed out waiting for the response from device.' };
    }
    if (result === 'offline') return { error: 'DeviceNotOnline', message: `device "${deviceId}" went offline before answering` };
    const accepted = result.status === 200;
    log.info({ ...ctx, stream: streamId.slice(0, 8), accepted }, accepted ? 'stream accepted by device' : 'stream refused by device');
    if (!accepted) {
      const reason = refusalReason(result.payload);
      return { accepted: false, ...(reason ? { reason } : {}) };
    }
    return { accepted: true, streamId, url: streamUrl, serviceToken };
  }
}
