import type { Logger } from '../core/log';
import { CLOSE, parsePropertyBag, parseStreamRequestTopic, type StreamRequest } from '../wire';
import { writeAudit } from './audit';
import type { AgentConfig } from './config';
import { ControlChannel } from './control-channel';
import { allowedStreamHosts, streamUrlRefusal, type HostPattern } from './stream-policy';
import { TcpStreamSession } from './stream-session';
import { PtyStreamSession } from './pty/session';
import { isPtyService } from './config';
import { VERSION } from '../core/version';
import { IDLE_GC_DELAY_MS, IdleCollector } from './idle-gc';
import { mallocTrim } from './malloc-trim';
import { StreamLimits, watchStream } from './limits';
import { MetricsServer } from './metrics';
import { SdNotify } from './sd-notify';
import { AgentStats, StatusFile, defaultStatusFile, statusSnapshot, type StatusSnapshot } from './status';
import { Telemetry } from './telemetry';
import { formatDurationMs } from '../core/duration';
import { settledWithin, withinMs } from '../core/deadline';

/** Request ids we answer: IoT Hub sends numbers; anything else could not be put into a topic safely. */
const SAFE_REQUEST_ID = /^[\w.-]{1,64}$/;

/** After the drain: how long reset streams get to report their end (audit lines) before the agent exits. */
export const STOP_GRACE_MS = 3_000;

/**
 * The agent's composition root: the control channel brings stream requests; each one the allowlist
 * permits becomes a session joining the streaming WebSocket to a local target. Every request, allowed
 * or not, ends in one audit line.
 */
export class Agent {
  private control?: ControlChannel;
  private readonly sessions = new Set<TcpStreamSession | PtyStreamSession>();
  /** Each open session's whole life (run, audit, release), so stop() can wait on them, not poll. */
  private readonly running = new Set<Promise<void>>();
  private allowedHosts: HostPattern[];
  private streamsTotal = 0;
  private stopping = false;
  private readonly limits: StreamLimits;
  readonly stats = new AgentStats();
  private statusFile?: StatusFile;
  private metrics?: MetricsServer;
  private telemetry?: Telemetry;
  private readonly notify: SdNotify;
  private readonly idleCollector: IdleCollector;

  constructor(
    private config: AgentConfig,
    private readonly log: Logger,
    opts: { notify?: SdNotify; env?: NodeJS.ProcessEnv } = {},
  ) {
    this.allowedHosts = allowedStreamHosts(config.device.hostName, config.hub.stream_hosts);
    this.limits = new StreamLimits(config);
    this.idleCollector = new IdleCollector(
      ({ ms, trimmed, trimError }) => {
        if (trimError) log.warn({ err: trimError }, 'cannot load the malloc_trim addon: freed memory stays with the process');
        log.debug({ gc_ms: Math.round(ms * 10) / 10, trimmed, rss: process.memoryUsage.rss() }, 'no streams open: collected garbage');
      },
      IDLE_GC_DELAY_MS,
      mallocTrim,
    );
    this.notify = opts.notify ?? new SdNotify(log.child({ part: 'sd_notify' }), opts.env);
    const env = opts.env ?? process.env;
    // Without a configured file and outside systemd (no RuntimeDirectory) there is no status file.
    this.statusFileName = config.status_file ?? (env.RUNTIME_DIRECTORY ? defaultStatusFile(env) : undefined);
  }

  /** The status file this agent writes, if any (config `status_file`, else $RUNTIME_DIRECTORY/status.json). */
  readonly statusFileName: string | undefined;

  /** Port of the metrics endpoint once listening (0 otherwise). */
  get metricsPort(): number {
    return this.metrics?.port ?? 0;
  }

  snapshot(): StatusSnapshot {
    return statusSnapshot(this.stats, {
      version: VERSION,
      device: this.config.device.deviceId,
      hub: this.config.device.hostName,
      reconnects: this.control?.reconnects ?? 0,
      lastError: this.control?.lastError,
    });
  }

  private statusLine(): string {
    const s = this.stats;
    return `${s.connected ? 'connected to' : 'connecting to'} ${this.config.device.hostName}; ${this.sessions.size} streams open, ${s.streamsTotal} accepted, ${s.refusedTotal} refused`;
  }

  get activeStreams(): number {
    return this.sessions.size;
  }

  /** Connected to the hub and subscribed to stream requests. */
  get connected(): boolean {
    return this.control?.listening ?? false;
  }

  /**
   * Starts the control channel and the status, metrics and telemetry parts; tells systemd READY.
   * When a part cannot start (metrics port taken), stops what did and rethrows, so the process exits.
   */
  async start(): Promise<void> {
    try {
      await this.startParts();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private async startParts(): Promise<void> {
    const { device } = this.config;
    this.control = new ControlChannel({
      device,
      log: this.log.child({ part: 'control' }),
      ...(this.config.caPem ? { caPem: this.config.caPem } : {}),
      ...(this.config.hub.ca ? { caFile: this.config.hub.ca } : {}),
      transport: this.config.hub.transport,
      mqttTlsPort: this.config.hub.mqtt_tls_port,
      proxy: this.config.hub.proxy,
      insecure: this.config.hub.insecure,
      tokenLifetimeS: this.config.hub.sas_token_lifetime / 1000,
      ...(this.config.identity ? { identity: this.config.identity } : {}),
      ...(this.config.brokerSettings ? { broker: this.config.brokerSettings } : {}),
    });
    this.control.on('request', (topic) => this.onRequest(topic));
    this.control.on('connected', () => {
      this.stats.setConnected(true);
      void this.notify.status(this.statusLine());
      void this.telemetry?.sendNow();
      // Starting and connecting leave garbage too: collected like after the last stream closed.
      if (this.sessions.size === 0) this.idleCollector.idle();
    });
    this.control.on('disconnected', () => {
      this.stats.setConnected(false);
      void this.notify.status(this.statusLine());
    });
    const snapshot = (): StatusSnapshot => this.snapshot();
    if (this.statusFileName) {
      this.statusFile = new StatusFile(this.statusFileName, snapshot, this.log.child({ part: 'status' }));
      this.stats.onChange(() => this.statusFile?.changed());
      this.statusFile.start();
    }
    this.telemetry = new Telemetry({
      intervalMs: this.config.telemetry.interval,
      snapshot,
      publish: (payload) => this.control?.publish(this.control.telemetryTopic(), payload),
      log: this.log.child({ part: 'telemetry' }),
    });
    this.telemetry.start();
    this.control.start();
    if (this.config.metrics_listen) {
      this.metrics = new MetricsServer(this.config.metrics_listen, snapshot, this.log.child({ part: 'metrics' }));
      await this.metrics.start();
    }
    // Ready once running, not once connected: a hub that is down at boot must not fail the unit's start.
    await this.notify.ready(this.statusLine());
    this.notify.startWatchdog();
    this.log.info({ device: device.deviceId, hub: device.hostName, services: Object.keys(this.config.services) }, 'agent started');
  }

  private onRequest(topic: string): void {
    const started = Date.now();
    let req: StreamRequest;
    try {
      req = parseStreamRequestTopic(topic, this.control?.topicRoot);
    } catch (err) {
      // Answer 400 when there is a request id to answer; never dial anything.
      const rid = topic.includes('?') || topic.includes('$rid=') ? parsePropertyBag(topic.split('/').pop() ?? '').get('$rid') : undefined;
      if (rid && SAFE_REQUEST_ID.test(rid)) this.control?.respond(400, rid, { reason: 'malformed stream request' });
      this.stats.refused({ request_id: rid, reason: (err as Error).message });
      writeAudit(this.log, { request_id: rid, outcome: 'malformed', bytes_to_target: 0, bytes_from_target: 0, duration_ms: 0, reason: (err as Error).message });
      return;
    }
    if (!SAFE_REQUEST_ID.test(req.requestId)) {
      // It would become part of our response topic: a `#`, `+` or `/` there could get us disconnected.
      this.stats.refused({ reason: 'request id is not 1-64 letters, digits, ".", "_" or "-"' });
      writeAudit(this.log, { outcome: 'malformed', bytes_to_target: 0, bytes_from_target: 0, duration_ms: 0, reason: 'unsafe request id' });
      return;
    }
    // The operator the hub names (`$op`), so the device's audit says who opened the stream.
    const ctx = { request_id: req.requestId, service: req.streamName, ...(req.operator ? { operator: req.operator } : {}) };
    const refuse = (reason: string): void => {
      this.control?.respond(400, req.requestId, { reason });
      this.stats.refused({ ...ctx, reason });
      writeAudit(this.log, { ...ctx, outcome: 'refused', bytes_to_target: 0, bytes_from_target: 0, duration_ms: Date.now() - started, reason });
    };
    if (this.stopping) return refuse('agent is shutting down');
    const service = Object.hasOwn(this.config.services, req.streamName) ? this.config.services[req.streamName] : undefined;
    if (!service) return refuse(`service "${req.streamName}" is not in the device's allowlist`);
    const urlRefusal = streamUrlRefusal(req.url, this.allowedHosts);
    if (urlRefusal) return refuse(urlRefusal);
    // It becomes an Authorization header: anything but printable ASCII could inject or break one.
    if (!/^[\x21-\x7e]{1,8192}$/.test(req.authToken)) return refuse('stream token is not 1-8192 printable ASCII characters');
    if (isPtyService(service)) {
      const open = [...this.sessions].filter((s) => s instanceof PtyStreamSession && s.streamName === req.streamName).length;
      if (open >= service.pty.max_sessions) return refuse(`service "${req.streamName}" has max_sessions (${service.pty.max_sessions}) open`);
    }
    const slot = this.limits.admit(req.streamName);
    if (!slot.ok) return refuse(slot.reason);

    this.control?.respond(200, req.requestId);
    this.streamsTotal++;
    const log = this.log.child({ rid: req.requestId, svc: req.streamName });
    let expiry: { activity(): void } | undefined;
    if (this.config.hub.insecure) log.warn('INSECURE: TLS verification is OFF for this stream (insecure: true in config)');
    const sessionCtx = {
      log,
      ...(this.config.caPem ? { caPem: this.config.caPem } : {}),
      dial: { proxy: this.config.hub.proxy, insecure: this.config.hub.insecure },
      onActivity: () => expiry?.activity(),
      pingIntervalMs: this.config.ping_interval,
    };
    // A PTY service is a shell on the device; it exists only when the config names one.
    const session = isPtyService(service) ? new PtyStreamSession(req, service, sessionCtx) : new TcpStreamSession(req, service, sessionCtx);
    const timer = watchStream(slot.limits, (reason) => {
      log.info({ reason }, 'stream limit reached: closing');
      session.close(CLOSE.LIMIT, reason);
    });
    expiry = timer;
    this.sessions.add(session);
    this.idleCollector.busy();
    const statsKey = this.stats.opened({ request_id: req.requestId, service: req.streamName, target: session.targetName });
    log.info({ target: session.targetName, open: this.sessions.size, total: this.streamsTotal }, 'stream accepted');
    let bytes = { to: 0, from: 0 };
    const done: Promise<void> = session
      .run()
      .then((r) => {
        bytes = { to: r.bytes_to_target, from: r.bytes_from_target };
        writeAudit(this.log, { ...ctx, target: session.targetName, ...r });
        if (r.outcome === 'stream-failed' || r.outcome === 'target-unavailable') this.stats.failedSetup(r.outcome);
      })
      .catch((err: unknown) => log.error({ err }, 'stream session failed'))
      .finally(() => {
        timer.stop();
        slot.release();
        this.sessions.delete(session);
        this.running.delete(done);
        this.stats.closed(statsKey, bytes.to, bytes.from);
        if (this.sessions.size === 0 && !this.stopping) this.idleCollector.idle();
      });
    this.running.add(done);
  }

  /**
   * Applies a reloaded config (SIGHUP): the allowlist, stream hosts, limits and log level apply to
   * new streams at once; open streams keep going. Hub connection settings need a restart.
   */
  reload(next: AgentConfig): void {
    const hubChanged = JSON.stringify({ ...next.hub, caPem: undefined }) !== JSON.stringify({ ...this.config.hub, caPem: undefined }) || next.device.deviceId !== this.config.device.deviceId || next.device.hostName !== this.config.device.hostName;
    if (hubChanged) this.log.warn('hub connection settings changed: they apply after a restart; the rest of the config applies now');
    const keep = { hub: this.config.hub, device: this.config.device, ...(this.config.caPem ? { caPem: this.config.caPem } : {}) };
    this.config = { ...next, ...keep };
    this.allowedHosts = allowedStreamHosts(this.config.device.hostName, next.hub.stream_hosts);
    this.limits.update(this.config);
    this.log.level = process.env.DEVSTREAMS_LOG_LEVEL ?? next.log.level;
    this.log.info({ services: Object.keys(next.services), file: next.file }, 'config reloaded');
    void this.notify.status(this.statusLine());
  }

  /**
   * Drains, then stops: new requests are refused at once; open streams may run to their end for
   * `drain_timeout`; what is still open then is reset (1001, the target gets a RST) and the control
   * channel closes. Never throws.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    const stoppingSent = this.notify.stopping();
    this.telemetry?.stop();
    this.idleCollector.stop();
    const drainMs = this.config.drain_timeout;
    if (this.sessions.size > 0 && drainMs > 0) {
      const draining = `draining: ${this.sessions.size} streams open may finish within ${formatDurationMs(drainMs)}`;
      this.log.info({ open: this.sessions.size, drain_ms: drainMs }, draining);
      void this.notify.status(draining);
      await settledWithin([...this.running], drainMs);
    }
    if (this.sessions.size > 0) {
      this.log.warn({ open: this.sessions.size }, `drain deadline passed: resetting ${this.sessions.size} open streams`);
      for (const s of this.sessions) s.close(CLOSE.GOING_AWAY, 'agent shutting down');
      await settledWithin([...this.running], STOP_GRACE_MS);
    }
    try {
      await this.control?.stop();
    } catch (err) {
      this.log.warn({ err }, 'error while stopping the control channel');
    }
    try {
      await this.metrics?.stop();
    } catch (err) {
      this.log.warn({ err }, 'error while stopping the metrics endpoint');
    }
    this.statusFile?.stop();
    // Bounded: a stuck systemd-notify must not hold up the exit.
    await withinMs(stoppingSent, 2000);
    this.log.info({ streams_left: this.sessions.size }, 'agent stopped');
  }
}
