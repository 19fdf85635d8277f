import { createHash, randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net';

/** A TCP echo server on 127.0.0.1:0. */
export async function startEchoServer(): Promise<{ port: number; server: Server; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A port on which nothing listens (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Connects, writes `payload` (in chunks), reads until `expectBytes` arrived, ends, returns what came back. */
export async function roundTrip(port: number, payload: Buffer, expectBytes = payload.length): Promise<Buffer> {
  const socket = connect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise<Buffer>((resolve, reject) => {
    socket.on('error', reject);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= expectBytes) socket.end();
    });
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.on('connect', () => {
      socket.write(payload);
      if (expectBytes === 0) socket.end();
    });
  });
}

/** Sends `payload`, half-closes, and collects everything until the other side closes. */
export async function sendAndHalfClose(port: number, payload: Buffer): Promise<{ data: Buffer; error?: NodeJS.ErrnoException }> {
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    let error: NodeJS.ErrnoException | undefined;
    socket.on('error', (e) => (error = e));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => socket.end());
    socket.on('close', () => resolve({ data: Buffer.concat(chunks), ...(error ? { error } : {}) }));
    socket.on('connect', () => socket.end(payload));
  });
}

export function random(n: number): Buffer {
  return randomBytes(n);
}

/**
 * A full-duplex target: on each connection it sends `toSend` while hashing everything it receives,
 * and resolves `received` with the hash and byte count once the client has finished sending.
 */
export async function startDuplexTarget(toSend: Buffer): Promise<{
  port: number;
  received: () => Promise<{ bytes: number; sha256: string }>;
  close: () => Promise<void>;
}> {
  const waiters: Array<(r: { bytes: number; sha256: string }) => void> = [];
  const results: Array<{ bytes: number; sha256: string }> = [];
  const server = createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    let bytes = 0;
    s.on('data', (c: Buffer) => {
      h.update(c);
      bytes += c.length;
    });
    s.on('end', () => {
      const r = { bytes, sha256: h.digest('hex') };
      const w = waiters.shift();
      if (w) w(r);
      else results.push(r);
    });
    s.on('error', () => undefined);
    s.end(toSend);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    received: () => {
      const r = results.shift();
      return r ? Promise.resolve(r) : new Promise((resolve) => waiters.push(resolve));
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** Sends `payload` and half-closes while hashing everything that comes back until the other side closes. */
export async function duplexClient(port: number, payload: Buffer): Promise<{ bytes: number; sha256: string }> {
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  const h = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve, reject) => {
    socket.on('error', reject);
    socket.on('data', (c: Buffer) => {
      h.update(c);
      bytes += c.length;
    });
    socket.on('end', () => socket.end());
    socket.on('close', () => resolve({ bytes, sha256: h.digest('hex') }));
    socket.on('connect', () => socket.end(payload));
  });
}

export interface FloodServer {
  port: number;
  /** Bytes written into the socket so far by the current (last) connection. */
  written: () => number;
  close: () => Promise<void>;
}

/**
 * A device-side target that floods: on each connection writes `totalBytes` (Infinity: until the
 * socket goes) of a known pattern, with backpressure, then ends. Shared by tests and `make bench`.
 */
export async function startFlood(totalBytes: number, block: Buffer): Promise<FloodServer> {
  let written = 0;
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.resume(); // discard anything sent to us
    written = 0;
    const pump = (): void => {
      while (written < totalBytes && !s.destroyed) {
        const n = Math.min(block.length, totalBytes - written);
        written += n;
        if (!s.write(n === block.length ? block : block.subarray(0, n))) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    written: () => written,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/**
 * Connects to a flood and reads nothing (a stalled reader); `drain()` then reads everything,
 * checking each byte against the pattern, and resolves with the count and the time it took.
 */
