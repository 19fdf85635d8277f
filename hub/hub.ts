import { createServer, type Server } from 'node:https';
import { createServer as createTlsServer, type Server as TlsServer, type TlsOptions } from 'node:tls';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { formatHostPort } from '../core/address';
import { LISTEN_BACKLOG, describeFdExhaustion, isFdExhaustion } from '../core/fd-limit';
import { ThrottledWarning } from '../core/log-throttle';
import { MetricsEndpoint } from '../core/metrics-endpoint';
import { formatHubMetrics, type HubCounts } from './metrics';
import type { Logger } from '../core/log';
import { STREAM_HANDSHAKE_TIMEOUT_S } from '../wire';
import { EmbeddedBroker } from './broker';
import type { ControlPlane } from './control-plane';
import { ExternalBroker, type ExternalBrokerOptions } from './external-broker';
import { randomBytes } from 'node:crypto';
import type { RateLimit } from './rate-limit';
import { DeviceHealth } from './devices';
import { HubDataDir } from './data-dir';
import { hubNames } from './names';
import { DeviceRegistry } from './device-registry';
import { OperatorStore } from './operators';
import { MQTT_PACKET_MAX_BYTES, TLS_HANDSHAKE_TIMEOUT_MS } from './limits';
import { Admission, DEFAULT_ADMISSION, type AdmissionLimits } from './admission';
import { ServiceApi } from './service-api';
import { StreamAudit } from './stream-audit';
import { BRIDGE_PATH_PREFIX, StreamingEndpoint } from './streaming-endpoint';
import { HTTP_DEADLINE_CHECK_INTERVAL_MS, HTTP_HEADERS_TIMEOUT_MS, HTTP_MAX_HEADER_BYTES, HTTP_REQUEST_TIMEOUT_MS, onClientError, refuseOnSocket, requestPath } from './http-guards';
import { HubConsole } from './console/console';
import { streamOpener } from './console/open-stream';
import { operatorStoreCheck } from './console/operator-check';

export const MQTT_WS_PATH = '/$iothub/websocket';

export interface HubOptions {
  dataDir: string;
  listen: { host: string; port: number };
  /** The HostName devices and services use (`name` or `name:port`); defaults to the listen address. */
  publicHost?: string;
  /** Extra names or IPs for the server certificate. */
  altNames?: string[];
  handshakeTimeoutMs?: number;
  /** Also accept MQTT over TLS (IoT Hub's 8883) here; same certificate, same broker. */
  mqttListen?: { host: string; port: number };
  /** Stream requests allowed per device and per service credential. */
  rateLimits?: { device?: RateLimit; service?: RateLimit };
  /**
   * Fleet mode (docs/scaling.md): the control plane is an external MQTT broker that devices connect
   * to; this hub then serves only the service API and the streaming endpoint.
   */
  externalBroker?: Omit<ExternalBrokerOptions, 'log' | 'instanceId'>;
  /** Caps on connections that have not authenticated: admission.ts has the defaults. */
  admission?: Partial<AdmissionLimits>;
  /** Unique per hub instance (external broker mode); random when not given. */
  instanceId?: string;
  /** Prometheus text metrics (`GET /metrics`) on this address, loopback advised; off unless set. */
  metricsListen?: string;
  /**
   * On stop: how long joined streams may run to their end before the rest are reset. `hub` passes
   * `--drain` (30 s); embedded (tests, tools) the default is none: stop resets at once.
   */
  drainMs?: number;
  /** Streaming WebSocket ping interval; a side silent for two of these is cut. */
  pingIntervalMs?: number;
  /** `host[:port]` streaming URLs name: this hub's HostName by default. */
  streamingHost?: string;
  /** The web console under /console/ (docs/console.md); on unless false. */
  console?: boolean;
  /**
   * Where devices' own web pages are served through streams (the console's Web links): a second
   * port, so that a device's page never runs in the console's origin. Off when not given.
   */
  devicePagesListen?: { host: string; port: number };
  /** Where the console's bundled files are (dist/console next to the bundle by default). */
  consoleAssetsDir?: string;
  log: Logger;
}


/** Embedded hubs stop at once unless told otherwise; the CLI's `--drain` defaults to 30 s. */
export const DEFAULT_DRAIN_MS = 0;

/** Resolves once the server listens; rejects with the listen error (EADDRINUSE, EACCES). */
function listenOn(server: TlsServer, at: { host: string; port: number }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: at.port, host: at.host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * The hub's composition root. One TLS port serves the service REST API, the streaming endpoint
 * (wss /bridges/…) and MQTT over WebSocket for devices (/$iothub/websocket), with the embedded broker.
 */
export class Hub {
  private server?: Server;
  private broker?: ControlPlane;
  private endpoint?: StreamingEndpoint;
  private mqttWss?: WebSocketServer;
  private hostName = '';
  private mqttServer?: TlsServer;
  private admission?: Admission;
  /** The device registry as the hub follows it; its `change` events name each device change. */
  registry?: DeviceRegistry;
  private draining = false;
  private readonly handshakeTimeouts: ThrottledWarning;
  private readonly acceptErrors: ThrottledWarning;
  private metrics?: MetricsEndpoint;
  /** Who may use the service side: `verify()` a credential, `revision()`/`change` to notice removal. */
  operators?: OperatorStore;
  /** One audit record per stream (logged; the recent ones kept for the console). */
  audit?: StreamAudit;
  private console?: HubConsole;
  private pagesServer?: Server;

  constructor(private readonly opts: HubOptions) {
    this.handshakeTimeouts = new ThrottledWarning(opts.log.child({ part: 'tls' }));
    this.acceptErrors = new ThrottledWarning(opts.log.child({ part: 'listen' }));
  }

  /** `HostName` as devices and services must write it. */
  get host(): string {
    return this.hostName;
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  /** Starts every part; when one fails, stops what already started and rethrows (the process can exit). */
  async start(): Promise<void> {
    try {
      await this.startParts();
    } catch (err) {
      this.draining = true;
      await this.stopParts();
      throw err;
    }
  }

  private async startParts(): Promise<void> {
    const { log, listen } = this.opts;
    const dataDir = new HubDataDir(this.opts.dataDir);
    const names = hubNames(listen, this.opts.publicHost, this.opts.altNames);
    const certHosts = names.certHosts;
    const tls = dataDir.prepare({ host_name: '', listen: formatHostPort(listen.host, listen.port) }, certHosts);
    const secrets = dataDir.secrets();
    // A devices.json that does not parse stops the start (exit 78, file:line:col); once running, the
    // hub keeps the last good registry instead. Its `change` events tell the session holders.
    const registry = new DeviceRegistry(dataDir, log.child({ part: 'registry' }));
    registry.load();
    registry.watch();
    this.registry = registry;
    // Operators (operators.json; absent: `service` with secrets.json's key), followed the same way.
    const operators = new OperatorStore({ dataDir, legacy: { name: secrets.service_policy_name, key: secrets.service_policy_key }, log: log.child({ part: 'operators' }) });
    operators.load();
    operators.watch();
    this.operators = operators;
    const audit = new StreamAudit(log.child({ part: 'audit' }));
    this.audit = audit;

    const external = this.opts.externalBroker;
    // Request ids carry the instance id, so a device's answer seen by every hub finds only the one that asked.
    const instanceId = this.opts.instanceId ?? randomBytes(4).toString('hex');
    this.broker = external
      ? new ExternalBroker({ ...external, instanceId, log: log.child({ part: 'broker' }) })
      : new EmbeddedBroker(registry, log.child({ part: 'broker' }));
    await this.broker.start();
    /** Ids removed from the registry since this hub started: their unused stream tokens are refused. */
    const removedDevices = new Set<string>();
    this.endpoint = new StreamingEndpoint(
      secrets.stream_signing_key,
      log.child({ part: 'streaming' }),
      this.opts.handshakeTimeoutMs ?? STREAM_HANDSHAKE_TIMEOUT_S * 1000,
      this.opts.pingIntervalMs,
      {
        audit,
        operatorExists: (name) => operators.get(name) !== undefined,
        // Disabled, or removed while this hub runs (a device need not be in the registry at all on
        // an external broker, and tests forge tokens for unregistered ids).
        deviceRevoked: (id) => {
          if (registry.get(id)?.status === 'disabled') return `device "${id}" is disabled`;
          return removedDevices.has(id) ? `device "${id}" was removed` : undefined;
        },
      },
    );
    this.endpoint.start();
    // A device removed or disabled loses its open streams too, not only its MQTT session (hub/broker.ts).
    registry.on('change', ({ deviceId, change }) => {
      if (change === 'removed') removedDevices.add(deviceId);
      if (change === 'added') removedDevices.delete(deviceId);
      if (change === 'removed' || change === 'disabled') this.endpoint?.endDeviceStreams(deviceId, `device ${change}`);
    });
    const admission = new Admission({ ...DEFAULT_ADMISSION, ...this.opts.admission }, log.child({ part: 'admission' }));
    this.admission = admission;
    this.endpoint.onTokenAccepted = (socket) => admission.authenticated(socket);
    if (this.broker instanceof EmbeddedBroker) this.broker.on('authenticated', (socket) => admission.authenticated(socket as Socket));
    const devices = new DeviceHealth(registry, this.broker, log.child({ part: 'devices' }), (id) => this.endpoint?.activeStreamsFor(id) ?? 0);
    const api = new ServiceApi({ registry, operators, audit, broker: this.broker, secrets, log: log.child({ part: 'api' }), streamingHost: () => this.opts.streamingHost ?? this.hostName, hostNames: () => [this.hostName, ...certHosts], devices, ...(external ? { requestIdPrefix: `${instanceId}-` } : {}), ...(this.opts.rateLimits ? { rateLimits: this.opts.rateLimits } : {}), onAuthorized: (socket) => admission.authenticated(socket) });
    if (this.opts.console !== false) {
      // The console is a service side inside the hub: it dials this hub's own streaming endpoint on loopback.
      const localHost = (): string => formatHostPort(names.selfHost, this.port);
      this.console = new HubConsole({
        log: log.child({ part: 'console' }),
        onAuthenticated: (socket) => admission.authenticated(socket),
        operators: operatorStoreCheck(operators),
        operatorChanges: operators,
        broker: this.broker,
        devices,
        endpoint: this.endpoint,
        audit,
        openStream: streamOpener(api, this.endpoint, localHost, Buffer.from(tls.ca.certPem)),
        ...(this.opts.consoleAssetsDir ? { assetsDir: this.opts.consoleAssetsDir } : {}),
        devicePagesPort: () => this.devicePagesPort || undefined,
      });
      this.console.start();
    }
    const consoleUi = this.console;
    this.mqttWss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      // One MQTT packet per WebSocket message (MQTT.js, the SDKs); the MQTT guard bounds the rest.
      maxPayload: MQTT_PACKET_MAX_BYTES,
      // IoT Hub's C SDK asks for "MQTT", the others for "mqtt": answer in kind.
      handleProtocols: (protocols) => [...protocols].find((p) => p.toLowerCase() === 'mqtt') ?? false,
    });

    // Client certificates are asked for but not required: services and SAS devices send none; the
    // broker admits an X.509 device only when the chain verified against the hub CA (socket.authorized).
    const tlsOptions = { key: tls.server.keyPem, cert: tls.server.certPem, minVersion: 'TLSv1.2' as const, requestCert: true, rejectUnauthorized: false, ca: [tls.ca.certPem], handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS };
    const httpsOptions = {
      ...tlsOptions,
      maxHeaderSize: HTTP_MAX_HEADER_BYTES,
      headersTimeout: HTTP_HEADERS_TIMEOUT_MS,
      requestTimeout: HTTP_REQUEST_TIMEOUT_MS,
      connectionsCheckingInterval: HTTP_DEADLINE_CHECK_INTERVAL_MS,
    };
    const server = createServer(httpsOptions);
    server.on('request', (req, res) => {
      // Draining: open streams finish, new ones go to another hub (or wait for this one's restart).
      if (this.draining) res.writeHead(503, { 'Content-Type': 'application/json', Connection: 'close', 'Retry-After': '5' }).end(JSON.stringify({ errorCode: 503000, message: 'hub is shutting down' }));
      else if (!consoleUi?.handle(req, res)) api.handle(req, res);
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on('clientError', onClientError(log.child({ part: 'http' })));
    server.on('connection', admission.onConnection);
    server.on('tlsClientError', (err, socket) => {
      // A timeout is load (or a flood), worth a warning; the rest is clients' business.
      if ((err as NodeJS.ErrnoException).code === 'ERR_TLS_HANDSHAKE_TIMEOUT') this.handshakeTimeouts.warn({ remote: socket.remoteAddress }, 'TLS handshake timed out: the hub may be overloaded');
      else log.debug({ err: err.message, remote: socket.remoteAddress }, 'TLS handshake failed');
    });
    server.on('error', (err) => this.onAcceptError(err));
    await listenOn(server, listen);
    this.server = server;
    const port = this.port;
    // IoT Hub's form: no port when it is 443 (`name:443` given as the public host is printed as `name`).
    this.hostName = names.hostName(port);
    dataDir.writeSettings({ host_name: this.hostName, listen: formatHostPort(listen.host, port) });
    log.info({ listen: formatHostPort(listen.host, port), host_name: this.hostName, data_dir: this.opts.dataDir }, 'hub listening');
    if (this.opts.mqttListen && !external) await this.startMqttTls(this.opts.mqttListen, tlsOptions, admission);
    if (this.opts.metricsListen) {
      this.metrics = new MetricsEndpoint(this.opts.metricsListen, () => formatHubMetrics(this.counts()), log.child({ part: 'metrics' }));
      await this.metrics.start();
    }
    if (this.opts.devicePagesListen && this.console) await this.startDevicePages(this.opts.devicePagesListen, this.console, httpsOptions, admission);
  }

  /** Port of the device pages listener (0 when there is none). */
  get devicePagesPort(): number {
    return (this.pagesServer?.address() as AddressInfo | null)?.port ?? 0;
  }

  /** The second HTTPS port for devices' own web pages (hub/console/web-proxy.ts): its own origin, nothing else on it. */
  private async startDevicePages(at: { host: string; port: number }, consoleUi: HubConsole, httpsOptions: Parameters<typeof createServer>[0], admission: Admission): Promise<void> {
    const server = createServer(httpsOptions);
    server.on('request', (req, res) => consoleUi.pages.handle(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      consoleUi.pages.handleUpgrade(req, socket, head);
    });
    server.on('clientError', onClientError(this.opts.log.child({ part: 'device-pages' })));
    server.on('connection', admission.onConnection);
    await listenOn(server, at);
    this.pagesServer = server;
    this.opts.log.info({ device_pages_listen: formatHostPort(at.host, this.devicePagesPort) }, 'device pages listening');
  }

  /** The load signals the metrics endpoint shows. */
  counts(): HubCounts {
    const e = this.endpoint?.counts ?? { refused: 0, handshakeTimeouts: 0, joined: 0 };
    return { streamsActive: this.activeStreams, streamsJoined: e.joined, streamHandshakeTimeouts: e.handshakeTimeouts, streamingRefused: e.refused, tlsHandshakeTimeouts: this.handshakeTimeouts.total, acceptErrors: this.acceptErrors.total };
  }

  /** Port of the metrics endpoint once listening (0 otherwise). */
  get metricsPort(): number {
    return this.metrics?.port ?? 0;
  }

  /** Port of the MQTT/TLS listener (0 when there is none). */
  get mqttPort(): number {
    return (this.mqttServer?.address() as AddressInfo | null)?.port ?? 0;
  }

  private async startMqttTls(at: { host: string; port: number }, tlsOptions: TlsOptions, admission: Admission): Promise<void> {
    const server = createTlsServer(tlsOptions, (socket) => {
      socket.on('error', () => socket.destroy());
      if (this.broker instanceof EmbeddedBroker) this.broker.handle(socket);
      else socket.destroy();
    });
    server.on('tlsClientError', (err, socket) => this.opts.log.debug({ err: err.message, remote: socket.remoteAddress }, 'MQTT/TLS handshake failed'));
    server.on('connection', admission.onConnection);
    server.on('error', (err) => this.onAcceptError(err));
    await listenOn(server, at);
    this.mqttServer = server;
    this.opts.log.info({ mqtt_listen: formatHostPort(at.host, this.mqttPort) }, 'MQTT over TLS listening');
  }

  /** Errors of a listening server are accept errors: out of descriptors, named with the limit. Never fatal. */
  private onAcceptError(err: Error): void {
    if (!this.server) return; // not listening yet: listenOn reports it
    this.acceptErrors.warn({ err: (err as NodeJS.ErrnoException).code ?? err.message }, isFdExhaustion(err) ? `cannot accept connections: ${describeFdExhaustion(err)}` : `cannot accept a connection: ${err.message}`);
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const path = requestPath(req.url);
    const broker = this.broker;
    if (path === MQTT_WS_PATH && this.mqttWss && broker instanceof EmbeddedBroker) {
      this.mqttWss.handleUpgrade(req, socket, head, (ws) => {
        const stream = createWebSocketStream(ws);
        stream.on('error', () => stream.destroy());
        broker.handle(stream, req);
      });
    } else if (path?.startsWith(BRIDGE_PATH_PREFIX) && this.endpoint) {
      this.endpoint.handleUpgrade(req, socket, head);
    } else if (this.console?.handleUpgrade(req, socket, head)) {
      // the console's terminal or a device's web page
    } else {
      this.opts.log.debug({ remote: req.socket.remoteAddress, status: path ? 404 : 400 }, 'upgrade refused: no such path');
      refuseOnSocket(socket, path ? 404 : 400);
    }
  }

  /** Tests and diagnostics only: delivers an arbitrary topic to one device's connection. */
  sendRawToDevice(deviceId: string, topic: string, payload: Buffer = Buffer.alloc(0)): boolean {
    return this.broker instanceof EmbeddedBroker ? this.broker.sendRaw(deviceId, topic, payload) : false;
  }

  /** Whether the control plane sees the device connected (and, on an external broker, this hub connected too). */
  isDeviceOnline(deviceId: string): boolean {
    return this.broker?.isOnline(deviceId) ?? false;
  }

  /** Connections on the listeners that have not authenticated (yet). */
  get unauthenticatedConnections(): number {
    return this.admission?.unauthenticated ?? 0;
  }

  get activeStreams(): number {
    return this.endpoint?.activeStreams ?? 0;
  }

  /**
   * Graceful stop: takes no new connections or stream requests, lets open streams run to their end
   * for the drain deadline, then resets the rest (1001) and stops the broker. Never throws.
   */
  async stop(): Promise<void> {
    this.draining = true;
    this.server?.close();
    this.mqttServer?.close();
    try {
      const left = await this.endpoint?.drain(this.opts.drainMs ?? DEFAULT_DRAIN_MS);
      if (left === 0) this.opts.log.info('drained: no streams open');
    } catch (err) {
      this.opts.log.warn({ err }, 'error while draining');
    }
    await this.stopParts();
  }

  private async stopParts(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    server?.close();
    const pagesServer = this.pagesServer;
    this.pagesServer = undefined;
    pagesServer?.close();
    pagesServer?.closeAllConnections();
    // Each part on its own: one that throws must not leave the broker or the listeners running.
    for (const [name, stop] of [
      ['registry', () => this.registry?.stop()],
      ['operators', () => this.operators?.stop()],
      ['console', () => this.console?.stop()],
      ['streaming endpoint', () => this.endpoint?.stop()],
      ['broker', () => this.broker?.stop()],
      ['mqtt websocket server', () => this.mqttWss?.close()],
      ['metrics', () => this.metrics?.stop()],
    ] as const) {
      try {
        await stop();
      } catch (err) {
        this.opts.log.warn({ err, part: name }, 'error while stopping');
      }
    }
    server?.closeAllConnections();
    const mqttServer = this.mqttServer;
    this.mqttServer = undefined;
    mqttServer?.close();
  }

}
