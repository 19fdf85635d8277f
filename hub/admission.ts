import type { Socket } from 'node:net';
import type { Logger } from '../core/log';

/** Connections that have not authenticated yet, in total (both listeners). */
export const UNAUTHENTICATED_CONNECTIONS_MAX = 1024;
/**
 * Connections that have not authenticated yet, from one remote address: above a device's burst of
 * stream requests (100, each one streaming WebSocket still in its TLS handshake at the same moment).
 */
export const UNAUTHENTICATED_PER_ADDRESS_MAX = 256;

export interface AdmissionLimits {
  total: number;
  perAddress: number;
}

export const DEFAULT_ADMISSION: AdmissionLimits = { total: UNAUTHENTICATED_CONNECTIONS_MAX, perAddress: UNAUTHENTICATED_PER_ADDRESS_MAX };

interface Endpoint {
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
  localPort?: number | undefined;
}

/** One TCP connection to one of our listeners, the same for the raw socket and the TLS socket over it. */
function connectionKey(s: Endpoint): string {
  return `${s.remoteAddress ?? '?'}|${s.remotePort ?? 0}|${s.localPort ?? 0}`;
}

/**
 * Caps on connections that have not (yet) authenticated, in total and per remote address, on the
 * hub's listeners: a connection counts from TCP accept until an MQTT CONNECT, a service request or a
 * stream token on it is accepted, or it closes. Over a cap, the new TCP connection is closed at once
 * (before TLS), like mosquitto's `max_connections`.
 */
export class Admission {
  /** connection key → remote address, of connections not authenticated yet. */
  private readonly pending = new Map<string, string>();
  private readonly perAddress = new Map<string, number>();
  private refusedSinceLog = 0;
  private lastRefusalLogMs = 0;

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly log: Logger,
  ) {}

  /** Unauthenticated connections now. */
  get unauthenticated(): number {
    return this.pending.size;
  }

  /** For a listener's `connection` event: admits the socket or closes it. */
  readonly onConnection = (socket: Socket): void => {
    const address = socket.remoteAddress ?? '?';
    const fromAddress = this.perAddress.get(address) ?? 0;
    if (this.pending.size >= this.limits.total || fromAddress >= this.limits.perAddress) {
      this.refuse(socket, address, this.pending.size >= this.limits.total ? 'total' : 'per address');
      return;
    }
    const key = connectionKey(socket);
    this.pending.set(key, address);
    this.perAddress.set(address, fromAddress + 1);
    socket.once('close', () => this.release(key));
  };

  /** The connection (raw or TLS socket) authenticated: it no longer counts. */
  authenticated(socket: Endpoint): void {
    this.release(connectionKey(socket));
  }

  private release(key: string): void {
    const address = this.pending.get(key);
    if (address === undefined) return;
    this.pending.delete(key);
    const left = (this.perAddress.get(address) ?? 1) - 1;
    if (left > 0) this.perAddress.set(address, left);
    else this.perAddress.delete(address);
  }

  /** Closes an over-cap connection; logs at most one warning a minute with the count. */
  private refuse(socket: Socket, address: string, which: string): void {
    socket.destroy();
    this.refusedSinceLog++;
    const now = Date.now();
    this.log.debug({ remote: address, cap: which }, 'connection refused: too many unauthenticated connections');
    if (now - this.lastRefusalLogMs >= 60_000) {
      this.log.warn(
        { remote: address, cap: which, refused: this.refusedSinceLog, limit_total: this.limits.total, limit_per_address: this.limits.perAddress },
        'refusing connections: too many unauthenticated connections',
      );
      this.lastRefusalLogMs = now;
      this.refusedSinceLog = 0;
    }
  }
}
