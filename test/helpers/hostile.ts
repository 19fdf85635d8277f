import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

/** What a raw connection saw: the bytes the hub answered and whether it closed the connection. */
export interface Exchange {
  data: Buffer;
  closed: boolean;
}

/**
 * Opens a TLS connection (or plain TCP with `tls: false`), writes `chunks`, and collects what comes
 * back until the hub closes, `maxBytes` arrived, or `waitMs` passed (then it closes itself).
 */
export function exchange(port: number, chunks: Array<Buffer | string>, opts: { tls?: boolean; waitMs?: number; maxBytes?: number; localAddress?: string } = {}): Promise<Exchange> {
  const { waitMs = 5_000, maxBytes = 64 * 1024 } = opts;
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    let size = 0;
    let done = false;
    const socket =
      opts.tls === false
        ? netConnect({ port, host: '127.0.0.1', ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) })
        : tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ data: Buffer.concat(got), closed });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on(opts.tls === false ? 'connect' : 'secureConnect', () => {
      for (const c of chunks) if (!socket.destroyed) socket.write(c);
    });
    socket.on('data', (d: Buffer) => {
      got.push(d);
      size += d.length;
      if (size >= maxBytes) finish(false);
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
  });
}

/** Opens `n` plain TCP connections to `port` (no TLS: they stay unauthenticated) and keeps them open. */
export async function holdConnections(port: number, n: number): Promise<Socket[]> {
  const held: Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = netConnect({ port, host: '127.0.0.1' });
    held.push(s);
    await new Promise((r) => s.once('connect', r));
  }
  return held;
}

/** The HTTP status code at the start of a raw response, or 0. */
export function statusOf(data: Buffer): number {
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(data.subarray(0, 32).toString('latin1'));
  return m ? Number(m[1]) : 0;
}

/** GET /healthz over a fresh connection: proves the hub still serves. */
export function healthz(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/healthz', rejectUnauthorized: false, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A process's resident set size in bytes (Linux). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** An MQTT variable-length "remaining length" field. */
export function mqttLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

/** A WebSocket client upgrade request for `path` (the key is fixed: tests never check the accept value). */
export function upgradeRequest(path: string, headers: Record<string, string> = {}): string {
  const base: Record<string, string> = {
    host: 'hub',
    upgrade: 'websocket',
    connection: 'Upgrade',
    'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'sec-websocket-version': '13',
    ...headers,
  };
  return `GET ${path} HTTP/1.1\r\n${Object.entries(base).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`;
}

/**
 * A WebSocket frame from a client, written by hand: binary and final unless told, masked with `mask`
 * (zero unless given, as masking is rarely what is tested; `null`: unmasked, which a server must
 * refuse), its length field saying `announce` when given instead of the payload's.
 */
export function wsFrame(payload: Buffer, opts: { announce?: number; opcode?: number; fin?: boolean; mask?: Buffer | null } = {}): Buffer {
  const len = opts.announce ?? payload.length;
  const mask = opts.mask === undefined ? Buffer.alloc(4) : opts.mask;
  const m = mask ? 0x80 : 0;
  const head: number[] = [((opts.fin ?? true) ? 0x80 : 0) | (opts.opcode ?? 2)];
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 0xff);
  else {
    head.push(m | 127);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(len));
    head.push(...b);
  }
  // A zero mask leaves the payload as it is: no copy.
  const body = mask && mask.readUInt32BE(0) !== 0 ? Buffer.from(payload) : payload;
  if (body !== payload) for (let i = 0; i < body.length; i++) body[i]! ^= mask![i & 3]!;
  return Buffer.concat([Buffer.from(head), ...(mask ? [mask] : []), body]);
}
