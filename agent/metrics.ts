import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseHostPort } from '../core/address';
import type { Logger } from '../core/log';
import type { StatusSnapshot } from './status';

/**
 * Optional Prometheus text endpoint (`GET /metrics`) on a loopback address only (the config refuses
 * anything else): a handful of gauges and counters, written by hand rather than with a client
 * library, because there are eight of them and none needs a histogram.
 */
export function formatMetrics(s: StatusSnapshot): string {
  const out: string[] = [];
  const metric = (name: string, type: 'gauge' | 'counter', help: string, samples: Array<[labels: string, value: number]>): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) out.push(`${name}${labels} ${value}`);
  };
  const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  metric('devstreams_agent_info', 'gauge', 'Agent version and device id.', [[`{version="${esc(s.version)}",device="${esc(s.device)}"}`, 1]]);
  metric('devstreams_hub_connected', 'gauge', '1 while the control channel to the hub is up.', [['', s.connection.state === 'connected' ? 1 : 0]]);
  metric('devstreams_hub_reconnects_total', 'counter', 'Control channel reconnects since start.', [['', s.connection.reconnects]]);
  metric('devstreams_streams_active', 'gauge', 'Streams open now.', [['', s.streams.active.length]]);
  metric('devstreams_streams_total', 'counter', 'Streams accepted since start.', [['', s.streams.total]]);
  metric('devstreams_stream_refusals_total', 'counter', 'Stream requests refused since start (allowlist, limits, malformed).', [['', s.streams.refused_total]]);
  metric('devstreams_stream_failures_total', 'counter', 'Accepted streams that could not be set up: the streaming endpoint (handshake failed or timed out) or the target (refused, unreachable).', [
    ['{reason="stream-failed"}', s.streams.failed?.['stream-failed'] ?? 0],
    ['{reason="target-unavailable"}', s.streams.failed?.['target-unavailable'] ?? 0],
  ]);
  metric('devstreams_stream_bytes_total', 'counter', 'Bytes moved by closed streams.', [
    ['{direction="to_target"}', s.bytes.to_target],
    ['{direction="from_target"}', s.bytes.from_target],
  ]);
  metric('devstreams_process_resident_memory_bytes', 'gauge', 'Resident set size of the agent.', [['', process.memoryUsage.rss()]]);
  metric('devstreams_process_start_time_seconds', 'gauge', 'Start time of the agent, seconds since the epoch.', [['', Math.floor(Date.parse(s.started_at) / 1000)]]);
  return `${out.join('\n')}\n`;
}

export class MetricsServer {
  private server?: Server;

  constructor(
    private readonly listen: string,
    private readonly snapshot: () => StatusSnapshot,
    private readonly log: Logger,
  ) {}

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  /** Listen failures are logged, not fatal: metrics must never keep the agent from running. */
  async start(): Promise<void> {
    const { host, port } = parseHostPort(this.listen, '127.0.0.1');
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
        return;
      }
      const body = formatMetrics(this.snapshot());
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body);
    });
    server.requestTimeout = 10_000;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      this.server = server;
      this.log.info({ listen: `${host}:${this.port}` }, 'metrics endpoint listening');
    } catch (err) {
      this.log.error({ listen: this.listen, err: (err as NodeJS.ErrnoException).code ?? (err as Error).message }, 'metrics endpoint could not listen');
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
