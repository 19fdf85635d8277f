import type { IncomingMessage } from 'node:http';
import type { RawData, WebSocket } from 'ws';
import { HELLO_HEADER, decodeHello } from '../wire';

/**
 * What the other side of a stream understands, as our hub reported it (wire/control.ts). Known at
 * once for a side that got no hello header (IoT Hub, or a hub from before negotiation): a plain
 * peer, no extensions. Otherwise known when the hub's hello frame arrives, which precedes every
 * byte from the peer; a stream that closes before it counts as a plain peer.
 */
export class PeerExtensions {
  private names?: ReadonlySet<string>;
  private readonly waiting: Array<(names: ReadonlySet<string>) => void> = [];

  /** A peer that announced nothing: every frame is payload, the stream ends with a close. */
  static plain(): PeerExtensions {
    const p = new PeerExtensions();
    p.settle([]);
    return p;
  }

  get known(): boolean {
    return this.names !== undefined;
  }

  /** Whether the peer announced `ext`; false while not yet known. */
  has(ext: string): boolean {
    return this.names?.has(ext) ?? false;
  }

  /** Runs `fn` with the peer's extensions: now if known, else when the hello (or the close) comes. */
  whenKnown(fn: (names: ReadonlySet<string>) => void): void {
    if (this.names) fn(this.names);
    else this.waiting.push(fn);
  }

  /** Resolves with the peer's extensions (empty for a plain peer). */
  get ready(): Promise<ReadonlySet<string>> {
    return new Promise((resolve) => this.whenKnown(resolve));
  }

  settle(names: readonly string[]): void {
    if (this.names) return;
    this.names = new Set(names);
    for (const fn of this.waiting.splice(0)) fn(this.names);
  }
}

const peers = new WeakMap<WebSocket, PeerExtensions>();

/**
 * Follows negotiation on a streaming WebSocket we dialed: call before it opens. The hub's 101 says
 * whether a hello will come; the hello is the first text frame. Listeners added here run before a
 * tunnel's, so the peer is known by the time the tunnel sees the hello (which it then ignores).
 */
export function followNegotiation(ws: WebSocket): PeerExtensions {
  const peer = new PeerExtensions();
  peers.set(ws, peer);
  ws.once('upgrade', (res: IncomingMessage) => {
    if (res.headers[HELLO_HEADER] === undefined) return peer.settle([]);
    const onMessage = (data: RawData, isBinary: boolean): void => {
      // The hub sends the hello before any peer frame; anything else first means no hello is coming.
      ws.off('message', onMessage);
      peer.settle(isBinary ? [] : decodeHello(data.toString()) ?? []);
    };
    ws.on('message', onMessage);
  });
  ws.once('close', () => peer.settle([]));
  return peer;
}

/** The peer of a WebSocket dialed with negotiation followed; a plain peer for any other. */
export function peerExtensions(ws: WebSocket): PeerExtensions {
  return peers.get(ws) ?? PeerExtensions.plain();
}
