import { EventEmitter } from 'node:events';
import { endMqttClient } from '../core/mqtt-end';
import { mqttUrlOptions } from '../core/mqtt-url';
import { connect as mqttConnect, type IClientOptions, type MqttClient } from 'mqtt';
import { Backoff } from '../core/backoff';
import type { BrokerEndpoint } from '../core/broker-endpoint';
import type { Logger } from '../core/log';
import {
  DEFAULT_DEVICE_TOPIC_ROOT,
  DEVICE_STATUS_ONLINE,
  DevstreamsError,
  deviceTopicRoot,
  fleetSubscriptions,
  formatFleetStreamRequestTopic,
  parseFleetTopic,
  parseStreamResponseTopic,
  topicRootTemplateProblem,
  type StreamRequest,
} from '../wire';
import type { BrokerEvents } from './broker';
import type { ControlPlane } from './control-plane';

export interface ExternalBrokerOptions extends BrokerEndpoint {
  /** Unique per hub instance: the MQTT client id and the prefix of its stream request ids. */
  instanceId: string;
  log: Logger;
  /** How long start() waits for the first connection. */
  connectTimeoutMs?: number;
  backoff?: Backoff;
}

export const BROKER_CONNECT_TIMEOUT_MS = 30_000;
export const BROKER_KEEPALIVE_S = 30;
/** Device ids seen on the broker are kept in memory; beyond this many, new ones are still served but not remembered. */
const MAX_KNOWN_DEVICES = 1_000_000;

/** CONNACK codes that no retry will fix (3.1.1: 4 bad user name or password, 5 not authorized). */
const FATAL_CONNACK = new Set([4, 5]);

/**
 * The control plane on an external MQTT broker (mosquitto, or a cluster). Devices connect to the
 * broker, not to the hub; each announces itself with a retained `online` on `{root}/status` and a
 * Last Will that flips it to `offline`, so every hub instance (and one that restarts) learns who is
 * online from the broker alone. The hub subscribes to all devices' responses: the request id carries
 * this instance's id, so only the instance that asked finds a waiter for an answer.
 */
export class ExternalBroker extends EventEmitter<BrokerEvents> implements ControlPlane {
  private client?: MqttClient;
  private stopped = false;
  private retryTimer?: NodeJS.Timeout;
  private starting?: (err?: Error) => void;
  private readonly backoff: Backoff;
  private readonly template: string;
  /** Device id → online, from the retained status topics. */
  private readonly status = new Map<string, boolean>();
  connected = false;

  constructor(private readonly opts: ExternalBrokerOptions) {
    super();
    this.template = opts.topicRoot ?? DEFAULT_DEVICE_TOPIC_ROOT;
    const problem = topicRootTemplateProblem(this.template);
    if (problem) throw new DevstreamsError('EUSAGE', `--device-topic-root "${this.template}" ${problem}`);
    const protocol = /^([a-z]+):\/\//i.exec(opts.url)?.[1]?.toLowerCase();
    if (protocol !== 'mqtt' && protocol !== 'mqtts') throw new DevstreamsError('EUSAGE', `--broker must be mqtt://host:port or mqtts://host:port, not "${opts.url}"`);
    this.backoff = opts.backoff ?? new Backoff({ baseMs: 500, capMs: 30_000 });
  }

  /** Connects; resolves once subscribed, rejects when the broker refuses us or stays unreachable. */
  start(): Promise<void> {
    this.stopped = false;
    const timeoutMs = this.opts.connectTimeoutMs ?? BROKER_CONNECT_TIMEOUT_MS;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => this.settleStart(new DevstreamsError('EBROKER', `could not connect to the broker ${this.opts.url} within ${timeoutMs / 1000} s`)), timeoutMs);
      this.starting = (err) => {
        clearTimeout(timer);
        this.starting = undefined;
        if (!err) return resolve();
        void this.stop();
        reject(err);
      };
      this.connect();
    });
  }

  /** Ends a pending start(): with nothing once ready, with the error when refused. */
  private settleStart(err?: Error): void {
    this.starting?.(err);
  }

  private connect(): void {
    const { log } = this.opts;
    const options: IClientOptions = {
      clientId: `devstreams-hub-${this.opts.instanceId}`,
      protocolVersion: 4,
      clean: true,
      keepalive: BROKER_KEEPALIVE_S,
      reconnectPeriod: 0, // reconnects are ours, with jitter
      connectTimeout: 15_000,
      queueQoSZero: false,
      ...(this.opts.username !== undefined ? { username: this.opts.username } : {}),
      ...(this.opts.password !== undefined ? { password: this.opts.password } : {}),
      ...(this.opts.caPem ? { ca: this.opts.caPem } : {}),
      ...(this.opts.certPem ? { cert: this.opts.certPem } : {}),
      ...(this.opts.keyPem ? { key: this.opts.keyPem } : {}),
    };
    const client = mqttConnect({ ...mqttUrlOptions(this.opts.url), ...options });
    this.client = client;
    client.on('connect', () => {
      const subs = fleetSubscriptions(this.template);
      // QoS 0: the session is clean anyway, and on NATS a QoS 1 subscription is a JetStream consumer
      // per hub that needs $MQTT.sub.> permissions (docs/scaling.md).
      client.subscribe([subs.status, subs.responses, subs.telemetry], { qos: 0 }, (err, granted) => {
        const refused = granted?.filter((g) => g.qos === 128).map((g) => g.topic) ?? [];
        if (err || refused.length) {
          log.error({ err: err?.message, refused }, 'broker refused the hub its subscriptions: check the ACL for the hub user');
          this.settleStart(new DevstreamsError('EBROKER', `broker refused the subscriptions ${refused.join(', ')}: check the ACL for the hub user`));
          // Connected but deaf is worse than retrying (after start, an ACL reload may fix it).
          client.end(true);
          return;
        }
        this.connected = true;
        this.backoff.connected();
        log.info({ broker: this.opts.url, client_id: options.clientId }, 'connected to broker');
        this.settleStart();
      });
    });
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet.retain));
    client.on('error', (err) => {
      const code = (err as Error & { code?: unknown }).code;
      log.warn({ broker: this.opts.url, err: err.message }, 'broker connection failed');
      if (typeof code === 'number' && FATAL_CONNACK.has(code)) {
        this.settleStart(new DevstreamsError('EBROKER', `broker ${this.opts.url} refused the hub: ${err.message}`));
      }
    });
    client.on('close', () => {
      if (this.client !== client) return;
      if (this.connected) log.warn({ broker: this.opts.url }, 'broker connection lost');
      this.connected = false;
      this.forgetOnline();
      client.removeAllListeners('message');
      client.end(true);
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const delay = this.backoff.next();
    this.opts.log.info({ in_ms: delay }, 'reconnecting to broker');
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private onMessage(topic: string, payload: Buffer, retained: boolean): void {
    const msg = parseFleetTopic(this.template, topic);
    if (!msg) return;
    if (msg.kind === 'status') {
      const online = payload.toString('utf8') === DEVICE_STATUS_ONLINE;
      const was = this.status.get(msg.deviceId);
      if (was === undefined && this.status.size >= MAX_KNOWN_DEVICES) return;
      this.status.set(msg.deviceId, online);
      if (was !== online) {
        if (!retained) this.opts.log.info({ device: msg.deviceId }, online ? 'device online' : 'device offline');
        this.emit(online ? 'online' : 'offline', msg.deviceId);
      }
      return;
    }
    if (msg.kind === 'telemetry') {
      this.emit('telemetry', msg.deviceId, payload);
      return;
    }
    try {
      const { status, requestId } = parseStreamResponseTopic(topic, msg.root);
      this.emit('stream-response', msg.deviceId, status, requestId, payload);
    } catch (err) {
      this.opts.log.warn({ device: msg.deviceId, err: (err as Error).message }, 'ignored malformed stream response');
    }
  }

  /**
   * Without the broker nothing is known: every device counts as offline until the retained status
   * (or, after a broker restart that lost it, the device's own announcement) says otherwise. Keeping
   * the old state would send requests to devices that have not resubscribed yet.
   */
  private forgetOnline(): void {
    for (const [id, online] of this.status) {
      if (!online) continue;
      this.status.set(id, false);
      this.emit('offline', id);
    }
  }

  isOnline(deviceId: string): boolean {
    return this.connected && this.status.get(deviceId) === true;
  }

  knows(deviceId: string): boolean {
    return this.status.has(deviceId);
  }

  sendStreamRequest(deviceId: string, req: StreamRequest): boolean {
    const client = this.client;
    if (!client || !this.connected || !this.isOnline(deviceId)) return false;
    let topic: string;
    try {
      topic = formatFleetStreamRequestTopic(req, deviceTopicRoot(this.template, deviceId));
    } catch {
      return false;
    }
    client.publish(topic, Buffer.alloc(0), { qos: 0 }, (err) => {
      if (err) this.opts.log.warn({ device: deviceId, err: err.message }, 'could not publish stream request');
    });
    return true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    this.connected = false;
    if (!client) return;
    await endMqttClient(client);
  }
}
