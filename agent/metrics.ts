import type { Logger } from '../core/log';
import { MetricsEndpoint, PromText, promLabel } from '../core/metrics-endpoint';
import type { StatusSnapshot } from './status';

/**
 * Optional Prometheus text endpoint (`GET /metrics`) on a loopback address only (the config refuses
 * anything else): a handful of gauges and counters (core/metrics-endpoint.ts).
 */
export function formatMetrics(s: StatusSnapshot): string {
  const text = new PromText();
  const metric = text.metric.bind(text);
  const esc = promLabel;
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
  return text.toString();
}

/** The agent's metrics endpoint: core/metrics-endpoint.ts serving formatMetrics of the live snapshot. */
export class MetricsServer extends MetricsEndpoint {
  constructor(listen: string, snapshot: () => StatusSnapshot, log: Logger) {
    super(listen, () => formatMetrics(snapshot()), log);
  }
}
