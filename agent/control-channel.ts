import { EventEmitter } from 'node:events';
import { endMqttClient } from '../core/mqtt-end';
import { mqttUrlOptions } from '../core/mqtt-url';
import { connect as mqttConnect, type MqttClient, type IClientOptions } from 'mqtt';
import type { Logger } from '../core/log';
import { Backoff } from '../core/backoff';
import {
  SAS_LIFETIME_S,
  createSasToken,
  deviceResourceUri,
  formatStreamResponseTopic,
  mqttUsername,
  splitHostName,
  streamRequestSubscription,
  type DeviceConnectionString,
  type StreamResponseStatus,
  DEVICE_STATUS_OFFLINE,
  DEVICE_STATUS_ONLINE,
  IOTHUB_ROOT,
  deviceStatusTopic,
  deviceTelemetryTopic,
  deviceTopicRoot,
  telemetryTopic,
} from '../wire';
import type { BrokerSettings } from './broker-config';
import { describeConnectError, isCertificateError } from '../core/connect-errors';
import { clockSkewSentence, describePeerCertificate, hubClockOffsetMs } from '../core/diagnose';
import { ProxyAgent, dialThroughProxy, proxyFor, type ProxySettings } from '../core/proxy';
import { TAKEOVER_WARNING, TakeoverDetector } from './takeover';

/** IoT Hub's MQTT over TLS port. */
export const MQTT_TLS_PORT = 8883;


export const MQTT_KEEPALIVE_S = 60;
/** Renew the SAS token (by reconnecting) when this share of its lifetime has passed. */
const TOKEN_RENEW_AT = 0.8;

export interface ControlChannelOptions {
  device: DeviceConnectionString;
  caPem?: Buffer;
  caFile?: string;
  log: Logger;
  /** Injected in tests to shorten the token lifetime or the backoff. */
  tokenLifetimeS?: number;
  /** The clock tokens are signed with (injected in tests to play a device with a wrong clock). */
  now?: () => number;
  backoff?: Backoff;
  /** MQTT over WebSocket on the hub's port (default) or MQTT over TLS on `mqttTlsPort`. */
  transport?: 'websocket' | 'mqtt_tls';
  mqttTlsPort?: number;
  /** Proxy from config (`none` or a URL); HTTPS_PROXY/NO_PROXY otherwise. */
  proxy?: string | undefined;
  /** TLS verification off: logged loudly at every connect. */
  insecure?: boolean;
  /** X.509 device identity (PEM). */
  identity?: { certPem: Buffer; keyPem: Buffer };
  /** Fleet mode: an external MQTT broker instead of the hub, under the device's own topic root. */
  broker?: BrokerSettings;
}

export interface ControlChannelEvents {
  request: [topic: string];
  connected: [];
  disconnected: [];
}

/**
 * The MQTT control channel to the hub: the only module that speaks MQTT. It keeps the connection up
 * on its own (full-jitter backoff, fresh SAS token on every connect, renewal before expiry) and
 * hands stream requests to the agent. It never exits the process and never logs a token.
 */
export class ControlChannel extends EventEmitter<ControlChannelEvents> {
  private client?: MqttClient;
  private stopped = false;
  private retryTimer?: NodeJS.Timeout;
  private renewTimer?: NodeJS.Timeout;
  private readonly backoff: Backoff;
  private readonly takeover = new TakeoverDetector();
  reconnects = 0;
  connected = false;
  private subscribedClient?: MqttClient;

  /** Connected and subscribed: a stream request sent now is heard. */
  get listening(): boolean {
    return this.connected && this.client !== undefined && this.subscribedClient === this.client;
  }
  lastError?: string;

  /** `$iothub` on the hub; the device's own root (`devstreams/{id}`) on an external broker. */
  readonly topicRoot: string;

  constructor(private readonly opts: ControlChannelOptions) {
    super();
    this.backoff = opts.backoff ?? new Backoff();
    this.topicRoot = opts.broker ? deviceTopicRoot(opts.broker.topicRoot, opts.device.deviceId) : IOTHUB_ROOT;
  }

  /** Where health telemetry goes. */
  telemetryTopic(): string {
    return this.opts.broker ? deviceTelemetryTopic(this.topicRoot) : telemetryTopic(this.opts.device.deviceId);
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  private url(): string {
    if (this.opts.broker) return this.opts.broker.url;
    if (this.opts.transport === 'mqtt_tls') return `mqtts://${this.endpoint().host}:${this.endpoint().port}`;
    return `wss://${this.opts.device.hostName}/$iothub/websocket`;
  }

  /** Where the control channel's TCP connection goes. */
  private endpoint(): { host: string; port: number } {
    if (this.opts.broker) {
      const u = mqttUrlOptions(this.opts.broker.url);
      return { host: u.hostname!, port: u.port ?? (u.protocol === 'mqtts' ? MQTT_TLS_PORT : 1883) };
    }
    const { host, port } = splitHostName(this.opts.device.hostName, 443);
    return this.opts.transport === 'mqtt_tls' ? { host, port: this.opts.mqttTlsPort ?? MQTT_TLS_PORT } : { host, port };
  }

  private connect(): void {
    const { device, log } = this.opts;
    const lifetimeS = this.opts.tokenLifetimeS ?? SAS_LIFETIME_S;
    const expiresAt = Math.floor((this.opts.now ?? Date.now)() / 1000) + lifetimeS;
    const password = device.sharedAccessKey
      ? createSasToken({ resource: deviceResourceUri(device.hostName, device.deviceId, device.moduleId), key: device.sharedAccessKey, expiresAt })
      : '';
    const options: IClientOptions = {
      clientId: device.deviceId,
      username: mqttUsername(device.hostName, device.deviceId),
      password,
      protocolVersion: 4,
      clean: false,
      keepalive: MQTT_KEEPALIVE_S,
      reconnectPeriod: 0, // we drive reconnects ourselves, with jitter
      connectTimeout: 30_000,
      rejectUnauthorized: !this.opts.insecure,
      queueQoSZero: false,
      // No mqtt-packet number cache: 65,536 two-byte Buffers (~13 MB RSS) to save an allocation per packet
      // on a channel that carries a few messages a minute.
      writeCache: false,
      ...(this.opts.caPem ? { ca: this.opts.caPem } : {}),
      ...(this.opts.identity ? { cert: this.opts.identity.certPem, key: this.opts.identity.keyPem } : {}),
    };
    const broker = this.opts.broker;
    if (broker) {
      // The broker's own credentials (password file or client certificate); a retained `online` on
      // connect and a retained `offline` Last Will tell every hub instance whether this device is up.
      options.username = broker.username ?? device.deviceId;
      if (broker.password !== undefined) options.password = broker.password;
      else delete options.password;
      if (broker.caPem) options.ca = broker.caPem;
      if (broker.certPem && broker.keyPem) Object.assign(options, { cert: broker.certPem, key: broker.keyPem });
      options.will = { topic: deviceStatusTopic(this.topicRoot), payload: Buffer.from(DEVICE_STATUS_OFFLINE), qos: 1, retain: true };
    }
    if (this.opts.insecure) {
      log.warn({ hub: device.hostName }, 'INSECURE: TLS verification is OFF (insecure: true in config); anyone on the path can impersonate the hub');
    }
    const { host, port } = this.endpoint();
    let proxy: ProxySettings | undefined;
    try {
      proxy = proxyFor(host, port, this.opts.proxy);
    } catch (err) {
      this.lastError = (err as Error).message;
      log.error({ err: this.lastError }, 'bad proxy setting');
      return this.scheduleReconnect();
    }
    if (proxy) log.info({ proxy: proxy.display, hub: `${host}:${port}` }, 'connecting to hub through proxy');
    if (proxy && broker && !this.url().startsWith('mqtts:')) {
      this.lastError = 'a proxy needs an mqtts:// broker.url';
      log.error({ proxy: proxy.display }, this.lastError);
      return this.scheduleReconnect();
    }
    if (proxy && (this.opts.transport === 'mqtt_tls' || broker)) {
      // mqtt.js's TLS transport passes its options to tls.connect, which takes a ready `socket`:
      // open the CONNECT tunnel first and let mqtt.js run TLS (with our CA and identity) inside it.
      dialThroughProxy(proxy, host, port).then(
        (socket) => {
          if (this.stopped) return void socket.destroy();
          this.openClient({ ...options, ...({ socket } as object) }, lifetimeS);
        },
        (err: Error) => {
          this.lastError = describeConnectError(err, { hub: device.hostName, caFile: this.opts.caFile, machine: 'device' });
          log.warn({ hub: device.hostName, err: this.lastError }, 'hub connection failed');
          this.scheduleReconnect();
        },
      );
      return;
    }
    if (proxy) options.wsOptions = { agent: new ProxyAgent(proxy) };
    this.openClient(options, lifetimeS);
  }

  private openClient(options: IClientOptions, lifetimeS: number): void {
    const { device, log } = this.opts;
    const client = mqttConnect({ ...mqttUrlOptions(this.url()), ...options });
    this.client = client;
    let failed = false;
    client.on('connect', (connack) => {
      this.connected = true;
      this.lastError = undefined;
      this.backoff.connected();
      this.takeover.connected(connack.sessionPresent);
      log.info({ hub: device.hostName, device: device.deviceId, reconnects: this.reconnects }, 'connected to hub');
      client.subscribe(streamRequestSubscription(this.topicRoot), { qos: 0 }, (err, granted) => {
        if (err || granted?.some((g) => g.qos === 128)) {
          log.error({ err: err?.message }, 'hub refused the stream request subscription');
        } else {
          this.subscribedClient = client;
          log.info('listening for stream requests');
          // Online only once subscribed, or a hub could send a request nobody hears.
          if (this.opts.broker) client.publish(deviceStatusTopic(this.topicRoot), DEVICE_STATUS_ONLINE, { qos: 1, retain: true });
        }
      });
      this.emit('connected');
      clearTimeout(this.renewTimer);
      // A broker password does not expire, nor does an X.509 identity: only SAS tokens need renewing.
      if (this.opts.broker || !device.sharedAccessKey) return;
      this.renewTimer = setTimeout(() => {
        log.info('renewing SAS token');
        this.reconnectNow();
      }, lifetimeS * TOKEN_RENEW_AT * 1000);
      this.renewTimer.unref();
    });
    client.on('message', (topic) => this.emit('request', topic));
    client.on('error', (err) => {
      failed = true;
      this.takeover.failed();
      this.lastError = describeConnectError(err, { hub: device.hostName, caFile: this.opts.caFile, machine: 'device' });
      log.warn({ hub: device.hostName, err: this.lastError }, 'hub connection failed');
      void this.diagnose(err);
    });
    client.on('close', () => {
      if (this.client !== client) return;
      const wasConnected = this.connected;
      this.connected = false;
      clearTimeout(this.renewTimer);
      // Closed by the hub after it accepted us, with no error: a takeover when it keeps happening.
      const takenOver = wasConnected && !failed ? this.takeover.droppedByHub() : undefined;
      if (wasConnected) {
        this.emit('disconnected');
        if (takenOver) {
          this.lastError = 'another device is probably using this device id';
          if (takenOver.warn) log.warn({ hub: device.hostName, device: device.deviceId, in_ms: takenOver.delayMs }, TAKEOVER_WARNING);
        } else if (!failed) log.warn({ hub: device.hostName }, 'hub connection lost');
      }
      client.removeAllListeners('message');
      client.end(true);
      this.scheduleReconnect(takenOver?.delayMs);
    });
  }

  /**
   * A second look after a failure, so the log names the cause: the certificate the hub presented when
   * it was not trusted, or this device's clock when the hub refused its (SAS) credentials.
   */
  private async diagnose(err: Error & { code?: unknown }): Promise<void> {
    const { device, log } = this.opts;
    const { host, port } = this.endpoint();
    if (isCertificateError(err)) {
      const shown = await describePeerCertificate({ host, port, proxy: this.opts.proxy });
      if (shown) {
        this.lastError = `${describeConnectError(err, { hub: device.hostName, caFile: this.opts.caFile, machine: 'device' })}; it presented ${shown}`;
        log.warn({ hub: device.hostName, err: this.lastError }, 'hub certificate not trusted');
      }
    } else if ((err.code === 4 || err.code === 5) && device.sharedAccessKey) {
      const https = splitHostName(device.hostName, 443);
      const now = this.opts.now ?? Date.now;
      const skew = clockSkewSentence(await hubClockOffsetMs({ ...https, proxy: this.opts.proxy, ca: this.opts.caPem, insecure: this.opts.insecure ?? false }, now), now());
      if (skew) {
        this.lastError = `the hub refused the device's token: ${skew}`;
        log.error({ hub: device.hostName, err: this.lastError }, 'clock is wrong');
      }
    }
  }

  /** Reconnects after the backoff's next delay, or after `delayMs` when given (a suspected takeover). */
  private scheduleReconnect(delayMs?: number): void {
    if (this.stopped) return;
    const delay = delayMs ?? this.backoff.next();
    this.opts.log.info({ in_ms: delay }, 'reconnecting to hub');
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.reconnects++;
      this.connect();
    }, delay);
  }

  /** Closes the current connection and opens a new one at once (token renewal). */
  private reconnectNow(): void {
    const old = this.client;
    this.client = undefined;
    old?.removeAllListeners('close');
    old?.end(false, () => undefined);
    this.connected = false;
    this.reconnects++;
    this.connect();
  }

  respond(status: StreamResponseStatus, requestId: string, body?: object): void {
    const client = this.client;
    if (!client || !this.connected) return;
    const payload = body ? JSON.stringify(body) : '';
    client.publish(formatStreamResponseTopic(status, requestId, this.topicRoot), payload, { qos: 0 });
  }

  publish(topic: string, payload: string | Buffer): void {
    if (this.client && this.connected) this.client.publish(topic, payload, { qos: 0 });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.renewTimer);
    const client = this.client;
    this.client = undefined;
    this.connected = false;
    if (!client) return;
    client.removeAllListeners('close');
    // A clean DISCONNECT suppresses the Last Will: say offline ourselves.
    if (this.opts.broker && client.connected) client.publish(deviceStatusTopic(this.topicRoot), DEVICE_STATUS_OFFLINE, { qos: 1, retain: true });
    await endMqttClient(client);
  }
}
