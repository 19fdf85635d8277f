import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { EventEmitter } from 'node:events';
import { Aedes, type AedesOptions, type Client } from 'aedes';
import type { Logger } from '../core/log';
import {
  formatStreamRequestTopic,
  isDevstreamsError,
  parseMqttUsername,
  parseSasToken,
  parseStreamResponseTopic,
  streamRequestSubscription,
  streamResponseSubscription,
  telemetryTopic,
  verifySasToken,
  type StreamRequest,
} from '../wire';
import type { DeviceRegistry, RegistryChange } from './device-registry';
import type { ControlPlane } from './control-plane';
import { callAt, credentialEnded, credentialEndMs, type SessionCredential } from './device-sessions';
import { TakeoverLog } from './takeover-log';

/** The TLS socket under an MQTT connection (MQTT over TLS, or the TLS under MQTT over WebSocket). */
function tlsSocketOf(client: Client): Partial<TLSSocket> | undefined {
  const c = client as Client & { req?: IncomingMessage; conn?: unknown };
  return (c.req?.socket ?? transports.get(c.conn as Duplex) ?? c.conn) as Partial<TLSSocket> | undefined;
}

/** `address:port` of a device's connection, for log lines. */
function remoteOf(client: Client): string {
  const socket = tlsSocketOf(client);
  return socket?.remoteAddress ? `${socket.remoteAddress}:${String(socket.remotePort)}` : 'unknown';
}
import { MQTT_CONNECT_TIMEOUT_MS } from './limits';
import { guardedConnection, type MqttGuard } from './mqtt-guard';

/**
 * An X.509 device is in when its TLS connection (MQTT over TLS, or the TLS under MQTT over WebSocket)
 * presented a certificate that the hub's CA signed (the listener verified the chain) and whose CN is
 * the device's id. Returns why not, or undefined.
 */
function x509Refusal(client: Client): string | undefined {
  const socket = tlsSocketOf(client);
  if (!socket || typeof socket.getPeerCertificate !== 'function') return 'X.509 device did not connect over TLS';
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return 'X.509 device presented no client certificate';
  if (!socket.authorized) return `client certificate not trusted: ${String(socket.authorizationError ?? 'not signed by the hub CA')}`;
  const cn = Array.isArray(cert.subject?.CN) ? cert.subject.CN[0] : cert.subject?.CN;
  if (cn !== client.id) return `client certificate is for "${String(cn)}", not for this device`;
  return undefined;
}

/** When the client certificate x509Refusal accepted stops being valid (ms since the epoch). */
function certificateNotAfterMs(client: Client): number {
  const notAfter = Date.parse(tlsSocketOf(client)?.getPeerCertificate?.().valid_to ?? '');
  // A certificate without a readable expiry was still verified by the chain check: end at once.
  return Number.isFinite(notAfter) ? notAfter : 0;
}
/** The TLS socket or WebSocket stream under each guarded MQTT connection (mqtt-guard.ts). */
const transports = new WeakMap<Duplex, Duplex>();

/** MQTT CONNACK return codes (3.1.1). */
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

/** Where a device's own subscriptions are parked, so that nothing published anywhere fans out to it. */
const PARKED_ROOT = '$devstreams-device';

export interface BrokerEvents {
  'stream-response': [deviceId: string, status: number, requestId: string, payload: Buffer];
  telemetry: [deviceId: string, payload: Buffer];
  online: [deviceId: string];
  offline: [deviceId: string];
  /** A connection passed authentication (its TCP/TLS socket): it leaves the pre-auth caps. */
  authenticated: [socket: Duplex];
}

/**
 * The embedded MQTT broker (aedes): the control plane of the hub. It speaks to devices the way IoT
 * Hub does: a device authenticates with a SAS token for its own id, may subscribe only to its stream
 * requests, may publish only its stream responses and telemetry, and a stream request is written to
 * that one device's connection; no device ever sees another's.
 */
export class EmbeddedBroker extends EventEmitter<BrokerEvents> implements ControlPlane {
  private aedes?: Aedes;
  private readonly online = new Map<string, Client>();
  private readonly subscribed = new WeakSet<Client>();
  /** What each session was admitted with; checked again at its expiry and at every registry change. */
  private readonly credentials = new WeakMap<Client, SessionCredential>();
  private readonly expiryTimers = new Map<Client, () => void>();
  private readonly takeovers: TakeoverLog;
  private readonly guards = new WeakMap<Duplex, MqttGuard>();

  constructor(
    private readonly registry: DeviceRegistry,
    private readonly log: Logger,
  ) {
    super();
    this.takeovers = new TakeoverLog(log);
  }

  async start(): Promise<void> {
    const options: AedesOptions = {
      // IoT Hub allows device ids of up to 128 characters.
      maxClientsIdLength: 128,
      drainTimeout: 30_000,
      // The guard's per-packet limit and the admission caps follow authentication, whatever decided it.
      authenticate: (client, username, password, done) =>
        this.authenticate(client, username, password, (err, ok) => {
          if (!err && ok) this.onAuthenticated(client);
          done(err, ok);
        }),
      connectTimeout: MQTT_CONNECT_TIMEOUT_MS,
      authorizeSubscribe: (client, sub, done) => {
        const root = '$iothub';
        if (sub.topic === streamRequestSubscription(root) || sub.topic === streamResponseSubscription(root)) {
          if (sub.topic === streamRequestSubscription(root)) this.subscribed.add(client);
          done(null, { ...sub, topic: `${PARKED_ROOT}/${client.id}/${sub.topic}` });
          return;
        }
        this.log.warn({ device: client.id, topic: sub.topic }, 'subscription refused: not a topic of this device');
        done(null, null);
      },
      authorizePublish: (client, packet, done) => {
        if (!client) return done(new Error('no client'));
        // Nothing is kept for devices (IoT Hub and mosquitto's retain_available false): a retained
        // publish, or a will asking to be retained, disconnects. The guard refuses most at the header.
        if (packet.retain) {
          this.log.warn({ device: client.id }, 'retained publish refused; disconnecting it');
          return done(new Error('retained publish refused'));
        }
        const t = packet.topic;
        if (t.toLowerCase().startsWith('$iothub/streams/res/') || t.startsWith(telemetryTopic(client.id))) return done(null);
        this.log.warn({ device: client.id, topic: t.slice(0, 200) }, 'publish refused: not a topic of this device; disconnecting it');
        done(new Error('publish not authorized'));
      },
      published: (packet, client, done) => {
        if (client) this.onDevicePublish(client, packet.topic, packet.payload as Buffer);
        done(null);
      },
    };
    this.aedes = await Aedes.createBroker(options);
    this.aedes.on('clientReady', (client) => {
      this.online.set(client.id, client);
      this.armExpiry(client);
      this.log.info({ device: client.id, online: this.online.size }, 'device connected');
      this.emit('online', client.id);
    });
    this.aedes.on('clientDisconnect', (client) => {
      this.expiryTimers.get(client)?.();
      this.expiryTimers.delete(client);
      if (this.online.get(client.id) === client) {
        this.online.delete(client.id);
        this.log.info({ device: client.id, online: this.online.size }, 'device disconnected');
        this.emit('offline', client.id);
      }
    });
    this.aedes.on('clientError', (client, err) => this.log.debug({ device: client.id, err: err.message }, 'device connection error'));
    this.aedes.on('connectionError', (client, err) => this.log.debug({ device: client.id, err: err.message }, 'MQTT connection refused'));
    // hub rotate-key / remove-device / disable-device (or an edit) changed this device's record:
    // its session ends when the change revoked what it logged in with.
    this.registry.on('change', this.registryOnChange);
  }

  private readonly registryOnChange = (change: RegistryChange): void => {
    const client = this.online.get(change.deviceId);
    if (client) this.recheck(client);
  };

  /** Ends the session when its credential runs out (token expiry, certificate notAfter). */
  private armExpiry(client: Client): void {
    const cred = this.credentials.get(client);
    if (!cred) return;
    this.expiryTimers.get(client)?.();
    this.expiryTimers.set(client, callAt(credentialEndMs(cred), () => this.recheck(client)));
  }

  /** Ends the session if its credentials no longer hold. True while it may go on. */
  private recheck(client: Client): boolean {
    const cred = this.credentials.get(client);
    let why: string | undefined;
    try {
      why = cred ? credentialEnded(cred, this.registry.get(client.id)) : 'no credentials on record';
    } catch (err) {
      // An unreadable registry ends nothing: the last good one stands.
      this.log.debug({ err: (err as Error).message }, 'could not read the device registry');
      return true;
    }
    if (!why) return true;
    this.expiryTimers.get(client)?.();
    this.expiryTimers.delete(client);
    this.log.warn({ device: client.id, remote: remoteOf(client), why }, 'device session ended: its credentials no longer hold');
    client.close();
    return false;
  }

  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (err: (Error & { returnCode: number }) | null, ok: boolean | null) => void,
  ): void {
    const refuse = (returnCode: number, why: string): void => {
      this.log.warn({ device: client.id, why }, 'device connection refused');
      done(Object.assign(new Error(why), { returnCode }), false);
    };
    const user = username ? parseMqttUsername(username) : null;
    if (!user || user.deviceId !== client.id) return refuse(BAD_USERNAME_OR_PASSWORD, 'username is not {host}/{deviceId}/?api-version=… for this client id');
    const device = this.registry.get(client.id);
    if (!device) return refuse(NOT_AUTHORIZED, 'unknown device');
    if (device.status === 'disabled') return refuse(NOT_AUTHORIZED, 'device is disabled (hub enable-device)');
    let cred: SessionCredential;
    if (device.authentication === 'x509_ca') {
      const why = x509Refusal(client);
      if (why) return refuse(NOT_AUTHORIZED, why);
      cred = { kind: 'x509', notAfterMs: certificateNotAfterMs(client) };
    } else {
      if (!password || password.length === 0) return refuse(BAD_USERNAME_OR_PASSWORD, 'no SAS token');
      try {
        const token = parseSasToken(password.toString('utf8'));
        if (!token.resource.toLowerCase().endsWith(`/devices/${client.id.toLowerCase()}`)) {
          return refuse(NOT_AUTHORIZED, 'token is for another device');
        }
        let key = device.primary_key;
        try {
          verifySasToken(token, key);
        } catch (err) {
          if (!isDevstreamsError(err, 'EBAD_SIGNATURE')) throw err;
          key = device.secondary_key;
          verifySasToken(token, key);
        }
        cred = { kind: 'sas', key, expiresAtMs: token.expiresAt * 1000 };
      } catch (err) {
        return refuse(NOT_AUTHORIZED, isDevstreamsError(err) ? err.message : 'bad token');
      }
    }
    const ended = credentialEnded(cred, device);
    if (ended) return refuse(NOT_AUTHORIZED, ended);
    this.credentials.set(client, cred);
    const current = this.online.get(client.id);
    if (current && current !== client) this.takeovers.note(client.id, remoteOf(current), remoteOf(client));
    done(null, true);
  }

  private onDevicePublish(client: Client, topic: string, payload: Buffer): void {
    if (topic.startsWith(telemetryTopic(client.id))) {
      this.emit('telemetry', client.id, payload);
      return;
    }
    try {
      const { status, requestId } = parseStreamResponseTopic(topic);
      this.emit('stream-response', client.id, status, requestId, payload);
    } catch (err) {
      this.log.warn({ device: client.id, err: (err as Error).message }, 'ignored malformed stream response');
    }
  }

  /**
   * Accepts one MQTT connection (MQTT over WebSocket or over TLS) through a guard that bounds what it
   * may send before and after authenticating (mqtt-guard.ts).
   */
  handle(transport: Duplex, req?: IncomingMessage): void {
    if (!this.aedes) {
      transport.destroy();
      return;
    }
    const remote = (req?.socket ?? (transport as Partial<TLSSocket>)).remoteAddress;
    const { conn, guard } = guardedConnection(transport, (code, detail) => this.log.debug({ remote, code }, `MQTT connection cut: ${detail}`));
    transports.set(conn, req?.socket ?? transport);
    if (req) guard.watchUnderlying(req.socket);
    this.guards.set(conn, guard);
    this.aedes.handle(conn, req);
  }

  private onAuthenticated(client: Client): void {
    const conn = (client as Client & { conn: Duplex }).conn;
    this.guards.get(conn)?.markAuthenticated();
    const socket = transports.get(conn);
    if (socket) this.emit('authenticated', socket);
  }

  isOnline(deviceId: string): boolean {
    return this.online.has(deviceId);
  }

  /** Sends a stream request to one device. False when it is not connected or not listening for them. */
  sendStreamRequest(deviceId: string, req: StreamRequest): boolean {
    const client = this.online.get(deviceId);
    if (!client || !this.subscribed.has(client)) return false;
    // No stream token for a session whose credentials ended (its expiry timer may not have run yet).
    if (!this.recheck(client)) return false;
    // aedes calls the callback unconditionally, although its types call it optional.
    client.publish({ cmd: 'publish', topic: formatStreamRequestTopic(req), payload: Buffer.alloc(0), qos: 0, retain: false, dup: false }, (err) => {
      if (err) this.log.warn({ device: deviceId, err: err.message }, 'could not deliver stream request');
    });
    return true;
  }

  /** Tests and diagnostics only: writes an arbitrary topic to one device's connection. */
  sendRaw(deviceId: string, topic: string, payload: Buffer): boolean {
    const client = this.online.get(deviceId);
    if (!client) return false;
    client.publish({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false }, () => undefined);
    return true;
  }

  async stop(): Promise<void> {
    this.registry.off('change', this.registryOnChange);
    for (const cancel of this.expiryTimers.values()) cancel();
    this.expiryTimers.clear();
    const aedes = this.aedes;
    this.aedes = undefined;
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    this.online.clear();
  }
}
