import { DevstreamsError } from '../wire';

/** Parses `HOST:PORT`, `[v6]:PORT` or (with a default host) `PORT`. Port 0 means "pick one". */
export function parseHostPort(text: string, defaultHost?: string): { host: string; port: number } {
  let host: string | undefined;
  let portText: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (v6) {
    host = v6[1]!;
    portText = v6[2]!;
  } else if (/^\d+$/.test(text)) {
    host = defaultHost;
    portText = text;
  } else {
    const i = text.lastIndexOf(':');
    if (i <= 0) throw new DevstreamsError('EUSAGE', `"${text}" is not HOST:PORT`);
    host = text.slice(0, i);
    portText = text.slice(i + 1);
  }
  const port = Number(portText);
  if (!host) throw new DevstreamsError('EUSAGE', `"${text}" needs a host (HOST:PORT)`);
  if (!/^\d+$/.test(portText) || port > 65535) throw new DevstreamsError('EUSAGE', `"${text}" has an invalid port`);
  return { host, port };
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * A hub's `HostName` in IoT Hub's form: no port when it is 443 (IoT Hub's SDKs take `host:port` for a
 * DNS name and fail), `host:port` otherwise.
 */
export function formatHostName(host: string, port: number): string {
  if (port !== 443) return formatHostPort(host, port);
  return host.includes(':') ? `[${host}]` : host;
}
