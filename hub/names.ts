import { hostname } from 'node:os';
import { formatHostName } from '../core/address';

const WILDCARD = new Set(['0.0.0.0', '::', '']);

export interface HubNames {
  /** Names the server certificate must cover, the public one first. */
  certHosts: string[];
  /** `HostName` as devices and services write it, once the port is known (IoT Hub's form: none for 443). */
  hostName(port: number): string;
  /** Where the hub reaches itself (its console dials its own streaming endpoint). */
  selfHost: string;
}

/**
 * The names a hub answers to, from where it listens and what it is called in public: one rule for
 * a running hub and for `hub init`, so both write the same certificate and connection strings.
 */
export function hubNames(listen: { host: string }, publicHost?: string, altNames: string[] = []): HubNames {
  const listenIsWildcard = WILDCARD.has(listen.host);
  const publicName = publicHost ? publicHost.replace(/:\d+$/, '').replace(/^\[|\]$/g, '') : undefined;
  return {
    certHosts: [...(publicName ? [publicName] : []), ...(listenIsWildcard ? [hostname(), 'localhost', '127.0.0.1'] : [listen.host]), ...altNames],
    selfHost: listenIsWildcard ? '127.0.0.1' : listen.host,
    hostName: (port) => publicHost?.replace(/^(\[[^\]]+\]|[^:]+):443$/, '$1') ?? formatHostName(listenIsWildcard ? hostname() : listen.host, port),
  };
}
