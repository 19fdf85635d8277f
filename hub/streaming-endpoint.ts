import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WS_PING_INTERVAL_MS } from '../core/ws-heartbeat';
import { settledWithin } from '../core/deadline';
import { ThrottledWarning } from '../core/log-throttle';
import type { Logger } from '../core/log';
import { formatBytes } from '../core/format';
import { printableAscii } from '../core/terminal-text';
import { CLOSE, EXT_HEADER, HELLO_HEADER, parseBearer, parseExtensionList } from '../wire';
import { Leg } from './bridge';
import { acceptUpgrade } from './ws-accept';
import { decodePathSegment, refuseOnSocket, requestPath } from './http-guards';
import type { StreamAudit } from './stream-audit';
import type { OpenStreamView } from './stream-views';
import { verifyStreamToken, type StreamSide, type StreamTokenClaims } from './stream-tokens';

export const BRIDGE_PATH_PREFIX = '/bridges/';
export type { OpenStreamView } from './stream-views';

interface JoinedStream {
  claims: StreamTokenClaims;
  device: Leg;
  service: Leg;
  startedAt: number;
}

interface PendingStream {
  claims: StreamTokenClaims;
  legs: Partial<Record<StreamSide, Leg>>;
  timer: NodeJS.Timeout;
  startedAt: number;
  /** The service side's address as it connected here (the operator's, for the audit line). */
  serviceRemote?: string;
}

/** What the endpoint needs of the operator store and the audit (both optional: tests run without). */
export interface StreamingAuditing {
  audit?: StreamAudit;
  /** False once the operator a service token names was removed: its unused tokens are refused. */
  operatorExists?: (name: string) => boolean;
  /** Why a device may no longer stream (removed, disabled), or undefined: its unused tokens are refused. */
  deviceRevoked?: (deviceId: string) => string | undefined;
}

/**
 * The streaming endpoint (`wss://host/bridges/{streamId}`): checks each side's bearer token, pairs
 * the device's and the service's WebSocket of one stream and relays between them. The two may come
 * in either order; each token works once; a side whose partner does not arrive within the handshake
 * timeout is closed with 4002.
 */
export class StreamingEndpoint {
  private readonly pending = new Map<string, PendingStream>();
  /** `streamId/side` of tokens already used, kept until they expire. */
  private readonly used = new Map<string, number>();
  private readonly active = new Set<Leg>();
  private readonly perDevice = new Map<string, number>();
  private streamsTotal = 0;
  /** Rate-limited warnings whose `total` counts every occurrence since start. */
  private readonly refusals: ThrottledWarning;
  private readonly handshakeTimeouts: ThrottledWarning;
  private readonly joined = new Map<string, JoinedStream>();
  /** Browsers' addresses of streams the console opened on their behalf (its own dial comes from loopback). */
  private readonly consoleRemotes = new Map<string, { remote: string; exp: number }>();
  /** Called when a stream joins or closes (the console's live view). */
  onStreamsChanged?: () => void;
  private sweepTimer?: NodeJS.Timeout;
  /** Told when a connection's stream token was accepted (it leaves the hub's pre-auth caps). */
  onTokenAccepted: (socket: IncomingMessage['socket']) => void = () => undefined;

  private draining = false;

  constructor(
    private readonly signingKey: string,
    private readonly log: Logger,
    private readonly handshakeTimeoutMs: number,
    private readonly pingIntervalMs = WS_PING_INTERVAL_MS,
    private readonly auditing: StreamingAuditing = {},
  ) {
    this.refusals = new ThrottledWarning(log);
    this.handshakeTimeouts = new ThrottledWarning(log);
  }

  start(): void {
    this.sweepTimer = setInterval(() => {
      const now = Date.now();
      for (const [k, exp] of this.used) if (exp <= now) this.used.delete(k);
      for (const [k, c] of this.consoleRemotes) if (c.exp <= now) this.consoleRemotes.delete(k);
    }, 10_000);
    this.sweepTimer.unref();
  }

  /** Streaming connections refused (bad or reused tokens) and streams whose partner never came, since start. */
  get counts(): { refused: number; handshakeTimeouts: number; joined: number } {
    return { refused: this.refusals.total, handshakeTimeouts: this.handshakeTimeouts.total, joined: this.streamsTotal };
  }

  get activeStreams(): number {
    return this.active.size / 2;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = requestPath(req.url) ?? '';
    const streamId = decodePathSegment(path.slice(BRIDGE_PATH_PREFIX.length));
    if (streamId === undefined) {
      this.log.debug({ remote: req.socket.remoteAddress }, 'streaming connection refused: malformed stream id');
      return refuseOnSocket(socket, 400, JSON.stringify({ errorCode: 400004, message: 'malformed stream id' }), 'application/json');
    }
    const token = parseBearer(req.headers.authorization);
    const refuse = (why: string): void => {
      this.refusals.warn({ stream: printableAscii(streamId, 64), why, remote: req.socket.remoteAddress }, `streaming connection refused: ${why}`);
      const body = JSON.stringify({ errorCode: 401002, message: `stream connection refused: ${why}` });
      refuseOnSocket(socket, 401, body, 'application/json');
    };
    if (this.draining) return refuseOnSocket(socket, 503, JSON.stringify({ errorCode: 503000, message: 'hub is shutting down' }), 'application/json');
    if (!token) return refuse('no bearer token');
    const claims = verifyStreamToken(this.signingKey, token);
    if ('refused' in claims) return refuse(claims.refused);
    if (claims.streamId !== streamId) return refuse('token is for another stream');
    if (claims.side === 'service' && claims.operator && this.auditing.operatorExists && !this.auditing.operatorExists(claims.operator)) {
      return refuse(`operator "${claims.operator}" was removed`);
    }
    const revoked = this.auditing.deviceRevoked?.(claims.deviceId);
    if (revoked) return refuse(revoked);
    const usedKey = `${claims.streamId}/${claims.side}`;
    if (this.used.has(usedKey)) return refuse('token already used');
    this.used.set(usedKey, claims.exp);
    this.onTokenAccepted(req.socket);
    const announced = parseExtensionList(req.headers[EXT_HEADER]);
    // A side that announced extensions learns in the 101 that a hello frame will follow; an IoT Hub
    // SDK side announces none and gets IoT Hub's plain answer.
    if (!acceptUpgrade(req, socket, announced ? [`${HELLO_HEADER}: 1`] : [])) return;
    this.attach(socket, head, claims, announced, req.socket.remoteAddress);
  }

  private attach(socket: Duplex, head: Buffer, claims: StreamTokenClaims, announced: string[] | null, remote: string | undefined): void {
    const s = socket as Duplex & { setTimeout?: (ms: number) => void; setNoDelay?: (on: boolean) => void };
    s.setTimeout?.(0);
    s.setNoDelay?.(true);
    // Both sides are pinged: a side that vanished without closing ends the stream for the other.
    const leg = new Leg(socket, claims.side, announced, this.pingIntervalMs);
    if (head.length > 0) socket.unshift(head);
    socket.resume();
    let p = this.pending.get(claims.streamId);
    if (!p) {
      p = {
        claims,
        legs: {},
        startedAt: Date.now(),
        timer: setTimeout(() => this.expire(claims.streamId), this.handshakeTimeoutMs),
      };
      this.pending.set(claims.streamId, p);
    }
    p.legs[claims.side] = leg;
    if (claims.side === 'service') {
      p.serviceRemote = this.consoleRemotes.get(claims.streamId)?.remote ?? remote;
      this.consoleRemotes.delete(claims.streamId);
    }
    const { device, service } = p.legs;
    if (device && service) {
      clearTimeout(p.timer);
      this.pending.delete(claims.streamId);
      this.join(p, device, service);
    }
    // A side that closes before its partner arrives stays pending until the handshake timer: the
    // partner must still learn why (say, 4001 "target refused the connection").

  }

  private view(j: JoinedStream): OpenStreamView {
    return {
      streamId: j.claims.streamId,
      deviceId: j.claims.deviceId,
      service: j.claims.service ?? null,
      operator: j.claims.operator ?? null,
      since: new Date(j.startedAt).toISOString(),
      deviceToService: j.device.bytes,
      serviceToDevice: j.service.bytes,
    };
  }

  /** The console is about to join `streamId` as the service side for a browser at `remote`: the audit names the browser. */
  openedByConsole(streamId: string, remote: string, exp: number): void {
    this.consoleRemotes.set(streamId, { remote, exp });
  }

  /** The joined streams, oldest first. */
  list(): OpenStreamView[] {
    return [...this.joined.values()].map((j) => this.view(j));
  }

  /** Ends one joined stream from the hub (an operator's decision): both sides get 4004. False when unknown. */
  closeStream(streamId: string, why: string): boolean {
    const j = this.joined.get(streamId);
    if (!j) return false;
    this.log.info({ stream: streamId.slice(0, 8), device: j.claims.deviceId, why }, 'stream closed by the hub');
    j.device.close(CLOSE.LIMIT, why);
    j.service.close(CLOSE.LIMIT, why);
    return true;
  }

  /**
   * Ends every stream of one device, joined or waiting for its partner (1001: each side's local
   * connection gets a reset): the device was removed or disabled. Returns how many were ended.
   */
  endDeviceStreams(deviceId: string, why: string): number {
    let ended = 0;
    for (const [streamId, p] of this.pending) {
      if (p.claims.deviceId !== deviceId) continue;
      clearTimeout(p.timer);
      this.pending.delete(streamId);
      for (const leg of Object.values(p.legs)) leg.close(CLOSE.GOING_AWAY, why);
      ended++;
    }
    for (const j of this.joined.values()) {
      if (j.claims.deviceId !== deviceId) continue;
      j.device.close(CLOSE.GOING_AWAY, why);
      j.service.close(CLOSE.GOING_AWAY, why);
      ended++;
    }
    if (ended > 0) this.log.warn({ device: deviceId, streams: ended, why }, 'ending the streams of a device whose credentials were revoked');
    return ended;
  }

  /** Joined streams of one device on this hub (`devstreams devices`). */
  activeStreamsFor(deviceId: string): number {
    return this.perDevice.get(deviceId) ?? 0;
  }

  private join(p: PendingStream, device: Leg, service: Leg): void {
    this.active.add(device).add(service);
    const id = p.claims.deviceId;
    this.perDevice.set(id, (this.perDevice.get(id) ?? 0) + 1);
    this.streamsTotal++;
    const joined = { claims: p.claims, device, service, startedAt: p.startedAt };
    this.joined.set(p.claims.streamId, joined);
    const ctx = { stream: p.claims.streamId.slice(0, 8), device: p.claims.deviceId };
    const ext = (leg: Leg): string => leg.announced?.join(',') ?? 'none (plain)';
    this.log.info({ ...ctx, device_ext: ext(device), service_ext: ext(service), active: this.activeStreams, total: this.streamsTotal }, 'stream joined');
    // Hellos first: each announced side learns what the other speaks before any of its bytes.
    device.helloFrom(service);
    service.helloFrom(device);
    device.pairWith(service);
    service.pairWith(device);
    this.onStreamsChanged?.();
    Promise.all([device.done, service.done]).then(() => {
      this.active.delete(device);
      this.active.delete(service);
      const left = (this.perDevice.get(id) ?? 1) - 1;
      if (left > 0) this.perDevice.set(id, left);
      else this.perDevice.delete(id);
      this.joined.delete(p.claims.streamId);
      this.onStreamsChanged?.();
      // Clean only when both sides closed normally; any other end reset someone's local connection.
      const clean = device.closed?.code === CLOSE.NORMAL && service.closed?.code === CLOSE.NORMAL;
      const why = [device.closed?.reason, service.closed?.reason].filter(Boolean).join('; ') || 'connection lost';
      this.log[clean ? 'info' : 'warn'](
        {
          ...ctx,
          device_to_service: device.bytes,
          service_to_device: service.bytes,
          duration_ms: Date.now() - p.startedAt,
          device_close: device.closed?.code,
          service_close: service.closed?.code,
          ...(device.textDropped || service.textDropped ? { text_frames_dropped: device.textDropped + service.textDropped } : {}),
          active: this.activeStreams,
        },
        `stream ${clean ? 'closed' : 'cut'}${clean ? '' : ` (${why})`} device→service ${formatBytes(device.bytes)} service→device ${formatBytes(service.bytes)}`,
      );
      this.auditing.audit?.record({
        ...this.auditAbout(p),
        outcome: 'closed',
        reason: clean ? 'both ends closed' : why,
        device_close: device.closed?.code,
        service_close: service.closed?.code,
        bytes_service_to_device: service.bytes,
        bytes_device_to_service: device.bytes,
        duration_ms: Date.now() - p.startedAt,
      });
    });
  }

  private expire(streamId: string): void {
    const p = this.pending.get(streamId);
    if (!p) return;
    this.pending.delete(streamId);
    for (const [side, leg] of Object.entries(p.legs)) {
      const other = side === 'device' ? 'service' : 'device';
      this.handshakeTimeouts.warn({ stream: streamId.slice(0, 8), device: p.claims.deviceId, waiting: side }, `stream handshake timed out: the ${other} never connected`);
      leg.close(CLOSE.HANDSHAKE_TIMEOUT, `the ${other} did not connect within ${Math.round(this.handshakeTimeoutMs / 1000)} s`);
      this.auditing.audit?.record({ ...this.auditAbout(p), outcome: 'timeout', reason: `the ${other} never connected to the streaming endpoint`, duration_ms: Date.now() - p.startedAt });
    }
  }

  private auditAbout(p: PendingStream): { operator?: string; remote?: string; device: string; service: string; stream: string } {
    const c = p.claims;
    return { operator: c.operator, remote: p.serviceRemote, device: c.deviceId, service: c.service ?? '?', stream: c.streamId.slice(0, 8) };
  }

  /**
   * Graceful stop, first half: takes no new stream connections, ends streams still waiting for their
   * partner (1001), and gives joined streams up to `deadlineMs` to end by themselves. Resolves with
   * how many are still open.
   */
  async drain(deadlineMs: number): Promise<number> {
    this.draining = true;
    this.closePending();
    if (this.active.size === 0 || deadlineMs <= 0) return this.activeStreams;
    this.log.info({ active: this.activeStreams, drain_ms: deadlineMs }, `draining: ${this.activeStreams} streams open may finish within ${Math.round(deadlineMs / 1000)} s`);
    await settledWithin([...this.active].map((l) => l.done), deadlineMs);
    return this.activeStreams;
  }

  private closePending(): Leg[] {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    const legs = [...this.pending.values()].flatMap((p) => Object.values(p.legs));
    this.pending.clear();
    for (const leg of legs) leg.close(CLOSE.GOING_AWAY, 'hub shutting down');
    return legs;
  }

  /** Resets what is still open (1001: each side's local connection gets a RST), with a deadline. */
  async stop(): Promise<void> {
    this.draining = true;
    clearInterval(this.sweepTimer);
    const legs = [...this.active, ...this.closePending()];
    if (this.active.size > 0) this.log.warn({ active: this.activeStreams }, `resetting ${this.activeStreams} open streams: hub shutting down`);
    for (const leg of this.active) leg.close(CLOSE.GOING_AWAY, 'hub shutting down');
    await settledWithin(legs.map((l) => l.done), 5000);
    for (const leg of legs) leg.destroy();
  }
}
