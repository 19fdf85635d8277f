import { PromText } from '../core/metrics-endpoint';

/** What the hub counts for its optional metrics endpoint (`hub --metrics-listen`). */
export interface HubCounts {
  streamsActive: number;
  streamsJoined: number;
  streamHandshakeTimeouts: number;
  streamingRefused: number;
  tlsHandshakeTimeouts: number;
  acceptErrors: number;
}

/**
 * The hub's Prometheus text: streams and the load signals that used to be invisible (handshakes
 * timing out, refused streaming connections, accept errors such as EMFILE).
 */
export function formatHubMetrics(c: HubCounts): string {
  return new PromText()
    .metric('devstreams_hub_streams_active', 'gauge', 'Joined streams open now.', [['', c.streamsActive]])
    .metric('devstreams_hub_streams_total', 'counter', 'Streams joined since start.', [['', c.streamsJoined]])
    .metric('devstreams_hub_stream_handshake_timeouts_total', 'counter', 'Streams whose other side never connected within the handshake timeout (4002).', [['', c.streamHandshakeTimeouts]])
    .metric('devstreams_hub_streaming_refused_total', 'counter', 'Streaming connections refused (missing, bad or reused token).', [['', c.streamingRefused]])
    .metric('devstreams_hub_tls_handshake_timeouts_total', 'counter', 'TLS handshakes that timed out (load, or a flood).', [['', c.tlsHandshakeTimeouts]])
    .metric('devstreams_hub_accept_errors_total', 'counter', 'Connections the listener could not accept (EMFILE: out of descriptors).', [['', c.acceptErrors]])
    .metric('devstreams_process_resident_memory_bytes', 'gauge', 'Resident set size of the hub.', [['', process.memoryUsage.rss()]])
    .toString();
}
