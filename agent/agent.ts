import type { Logger } from '../core/log';
import { CLOSE, parsePropertyBag, parseStreamRequestTopic, type StreamRequest } from '../wire';
import { writeAudit } from './audit';
import type { AgentConfig } from './config';
import { ControlChannel } from './control-channel';
import { allowedStreamHosts, streamUrlRefusal, type HostPattern } from './stream-policy';
import { TcpStreamSession } from './stream-session';

/** How long open streams get to finish on shutdown before they are cut. */
export const STOP_DEADLINE_MS = 10_000;

/**
 * The agent's composition root: the control channel brings stream requests; each one the allowlist
 * permits becomes a session joining the streaming WebSocket to a local target. Every request, allowed
 * or not, ends in one audit line.
 */
export class Agent {
  private control?: ControlChannel;
  private readonly sessions = new Set<TcpStreamSession>();
  private allowedHosts: HostPattern[];
  private streamsTotal = 0;
  private stopping = false;

  constructor(
    private config: AgentConfig,
    private readonly log: Logger,
  ) {
    this.allowedHosts = allowedStreamHosts(config.device.hostName, config.hub.stream_hosts);
  }

  get activeStreams(): number {
    return this.sessions.size;
  }

  get connected(): boolean {
    return this.control?.connected ?? false;
  }

  start(): void {
    const { device } = this.config;
    this.control = new ControlChannel({
      device,
      log: this.log.child({ part: 'control' }),
      ...(this.config.caPem ? { caPem: this.config.caPem } : {}),
      ...(this.config.hub.ca ? { caFile: this.config.hub.ca } : {}),
    });
    this.control.on('request', (topic) => this.onRequest(topic));
    this.control.start();
    this.log.info({ device: device.deviceId, hub: device.hostName, services: Object.keys(this.config.services) }, 'agent started');
  }

  private onRequest(topic: string): void {
    const started = Date.now();
    let req: StreamRequest;
    try {
      req = parseStreamRequestTopic(topic);
    } catch (err) {
      // Answer 400 when there is a request id to answer; never dial anything.
      const rid = topic.includes('?') || topic.includes('$rid=') ? parsePropertyBag(topic.split('/').pop() ?? '').get('$rid') : undefined;
      if (rid && /^[\w.-]{1,64}$/.test(rid)) this.control?.respond(400, rid, { reason: 'malformed stream request' });
      writeAudit(this.log, { request_id: rid, outcome: 'malformed', bytes_to_target: 0, bytes_from_target: 0, duration_ms: 0, reason: (err as Error).message });
      return;
    }
    const ctx = { request_id: req.requestId, service: req.streamName };
    const refuse = (reason: string): void => {
      this.control?.respond(400, req.requestId, { reason });
      writeAudit(this.log, { ...ctx, outcome: 'refused', bytes_to_target: 0, bytes_from_target: 0, duration_ms: Date.now() - started, reason });
    };
    if (this.stopping) return refuse('agent is shutting down');
    const service = Object.hasOwn(this.config.services, req.streamName) ? this.config.services[req.streamName] : undefined;
    if (!service) return refuse(`service "${req.streamName}" is not in the device's allowlist`);
    const urlRefusal = streamUrlRefusal(req.url, this.allowedHosts);
    if (urlRefusal) return refuse(urlRefusal);

    this.control?.respond(200, req.requestId);
    this.streamsTotal++;
    const log = this.log.child({ rid: req.requestId, svc: req.streamName });
    const session = new TcpStreamSession(req, service, { log, ...(this.config.caPem ? { caPem: this.config.caPem } : {}) });
    this.sessions.add(session);
    log.info({ target: session.targetName, open: this.sessions.size, total: this.streamsTotal }, 'stream accepted');
    session
      .run()
      .then((r) => writeAudit(this.log, { ...ctx, target: session.targetName, ...r }))
      .catch((err: unknown) => log.error({ err }, 'stream session failed'))
      .finally(() => this.sessions.delete(session));
  }

  /** Stops taking requests, closes open streams (deadline STOP_DEADLINE_MS) and the control channel. Never throws. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const s of this.sessions) s.close(CLOSE.GOING_AWAY, 'agent shutting down');
    const deadline = Date.now() + STOP_DEADLINE_MS;
    while (this.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    try {
      await this.control?.stop();
    } catch (err) {
      this.log.warn({ err }, 'error while stopping the control channel');
    }
    this.log.info({ streams_left: this.sessions.size }, 'agent stopped');
  }
}
