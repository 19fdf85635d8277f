import { Agent as HttpsAgent } from 'node:https';
import { createSecureContext } from 'node:tls';
import { WebSocket } from 'ws';
import { EXT_HEADER, STREAM_EXTENSIONS, bearer } from '../wire';
import { followNegotiation } from './peer-extensions';
import { ProxyAgent, proxyFor } from './proxy';

export const STREAM_CONNECT_TIMEOUT_MS = 30_000;
/** What the device accepts in one frame from the hub. IoT Hub sends ≤ 64 KiB; leave room for others. */
const MAX_INBOUND_FRAME_BYTES = 1024 * 1024;

function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

/** TLS sessions kept per host for resumption (Node's default is 100). */
const TLS_SESSIONS_CACHED = 100;
const dialAgents = new WeakMap<Buffer, HttpsAgent>();
let systemCaDialAgent: HttpsAgent | undefined;

/**
 * Stream dials share one https.Agent per CA: it keeps recent TLS sessions per host, so the next
 * stream resumes (no certificate signature at the hub, no chain and name check here), and one
 * secure context, so the CA is not parsed again for every stream. Those two were about a third of
 * the agent's CPU per stream (docs/benchmarks.md). Upgraded sockets never return to the agent.
 */
function dialAgent(caPem: Buffer | undefined): HttpsAgent {
  if (!caPem) return (systemCaDialAgent ??= new HttpsAgent({ maxCachedSessions: TLS_SESSIONS_CACHED }));
  let agent = dialAgents.get(caPem);
  if (!agent) {
    agent = new HttpsAgent({ maxCachedSessions: TLS_SESSIONS_CACHED, secureContext: createSecureContext({ ca: caPem }) });
    dialAgents.set(caPem, agent);
  }
  return agent;
}

export interface DialOptions {
  /** Proxy setting from config (`none` or a URL); HTTPS_PROXY/NO_PROXY otherwise. */
  proxy?: string | undefined;
  /** Turns TLS verification off (agent `insecure: true`); the caller logs it loudly. */
  insecure?: boolean;
  /** Extensions announced to the hub (default: all this build speaks); `[]` dials as a plain IoT Hub peer. */
  extensions?: readonly string[];
}

/**
 * Dials the streaming URL the way IoT Hub expects: Bearer token, no subprotocol, no redirects; plus
 * our extension header, which IoT Hub ignores. What the peer speaks: `peerExtensions(ws)`.
 */
export function dialStream(url: string, authToken: string, caPem?: Buffer, dial: DialOptions = {}): WebSocket {
  const { hostname, port } = new URL(url);
  const proxy = proxyFor(hostname, port === '' ? 443 : Number(port), dial.proxy);
  const extensions = dial.extensions ?? STREAM_EXTENSIONS;
  const ws = new WebSocket(url, {
    headers: { Authorization: bearer(authToken), ...(extensions.length ? { [EXT_HEADER]: extensions.join(',') } : {}) },
    perMessageDeflate: false,
    followRedirects: false,
    handshakeTimeout: STREAM_CONNECT_TIMEOUT_MS,
    maxPayload: MAX_INBOUND_FRAME_BYTES,
    // An all-zero masking key: ws then skips masking here and unmasking at the hub (both were
    // pure-JS loops costing ~30% of connect's and the hub's CPU per byte; see docs/benchmarks.md).
    // Masking guards browsers against cache poisoning by cleartext proxies; this is not a browser
    // and the connection is TLS, so no intermediary reads the frames. Any server unmasks zero fine.
    generateMask: zeroMask,
    rejectUnauthorized: !dial.insecure,
    ...(caPem ? { ca: caPem } : {}),
    agent: proxy ? new ProxyAgent(proxy) : dialAgent(caPem),
  });
  followNegotiation(ws);
  return ws;
}
