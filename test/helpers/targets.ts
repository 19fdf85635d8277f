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
