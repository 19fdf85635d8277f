import { isIP } from 'node:net';
import { splitHostName } from '../wire';

/**
 * Which streaming URLs the agent may dial. A stream request carries a URL from outside; the agent
 * dials it only when it is `wss:`, has no credentials in it, and names a host (and port) that its
 * own config allows: the hub's host, IoT Hub's streaming domains for an IoT Hub, or `hub.stream_hosts`.
 */
export interface HostPattern {
  /** Lowercase host, or `*.suffix` for any subdomain. */
  host: string;
  port: number;
}

function parsePattern(text: string): HostPattern {
  const { host, port } = splitHostName(text.trim().toLowerCase(), 443);
  return { host: host.replace(/\.$/, ''), port };
}

export function allowedStreamHosts(hubHostName: string, extra: string[] = []): HostPattern[] {
  const hub = parsePattern(hubHostName);
  const patterns = [hub];
  if (hub.host.endsWith('.azure-devices.net')) {
    patterns.push({ host: '*.azure-devices.net', port: 443 });
  }
  return [...patterns, ...extra.map(parsePattern)];
}

function hostMatches(pattern: string, host: string): boolean {
  if (pattern.startsWith('*.')) {
    // Never let a wildcard match an IP literal.
    return isIP(host) === 0 && host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1;
  }
  return pattern === host;
}

/** Returns why the URL is refused, or undefined when it may be dialed. */
export function streamUrlRefusal(rawUrl: string, allowed: HostPattern[]): string | undefined {
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    return 'streaming URL is not a valid URL';
  }
  if (url.protocol !== 'wss:') return `streaming URL scheme ${url.protocol} is not wss:`;
  if (url.username || url.password) return 'streaming URL carries credentials';
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
  const port = url.port === '' ? 443 : Number(url.port);
  if (!allowed.some((p) => p.port === port && hostMatches(p.host, host))) {
    return `streaming host ${url.host} is not the hub or an allowed stream host`;
  }
  return undefined;
}
