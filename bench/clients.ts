import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';

const ONE = Buffer.from([0x2a]);

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

function open(port: number): Socket {
  return connect({ host: '127.0.0.1', port, noDelay: true, allowHalfOpen: true });
}

/** Ends a socket and waits until it is closed (the far end answered our FIN). */
function endAndClose(s: Socket, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed) return resolve();
    const timer = setTimeout(() => s.destroy(), timeoutMs);
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    s.on('end', () => s.end());
    s.resume();
    s.end();
  });
}

/** Bytes in one ping of the round-trip measurement (issue 16 asks for 64-byte ping-pong beside socat's). */
export const PING_BYTES = 64;

/** `count` 64-byte ping-pongs on one connection: round-trip times in ms (from the write to the last byte back). */
export async function pingPong(port: number, count: number): Promise<number[]> {
  const ping = payload(PING_BYTES);
  const s = open(port);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  // Warm-up: the first exchanges include stream setup and JIT.
  const times: number[] = [];
  const warmup = Math.min(50, count);
  await new Promise<void>((resolve, reject) => {
    let i = 0;
    let t0 = 0;
    let got = 0;
    s.on('error', reject);
    s.on('data', (chunk: Buffer) => {
      // One ping in flight at a time; its echo may come in pieces.
      got += chunk.length;
      if (got > PING_BYTES) return reject(new Error(`ping-pong got ${got} bytes for a ${PING_BYTES}-byte ping`));
      if (got < PING_BYTES) return;
      got = 0;
      const t = nowMs() - t0;
      if (i >= warmup) times.push(t);
      if (++i === count + warmup) return resolve();
      t0 = nowMs();
      s.write(ping);
    });
    t0 = nowMs();
    s.write(ping);
  });
  await endAndClose(s);
  return times;
}

/** Time from the TCP connect call to the first echoed byte, in ms; the stream is then closed. */
export function setupOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    const s = open(port);
    const onEarlyClose = (): void => reject(new Error('closed before the first echoed byte'));
    s.once('error', reject);
    s.once('connect', () => s.write(ONE));
    s.once('data', () => {
      const t = nowMs() - t0;
      s.off('close', onEarlyClose);
      endAndClose(s).then(() => resolve(t), reject);
    });
    s.once('close', onEarlyClose);
  });
}

/**
 * Opens a stream, sends `payload` and checks the echo is byte for byte the same; resolves with the
 * socket still open (the caller closes it with `closeAll`).
 */
export function openVerified(port: number, payload: Buffer): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = open(port);
    const chunks: Buffer[] = [];
    let got = 0;
    const fail = (err: Error): void => {
      s.destroy();
      reject(err);
    };
    s.once('error', fail);
    s.once('connect', () => s.write(payload));
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got < payload.length) return;
      s.removeAllListeners('data');
      s.off('close', onEarlyClose);
      if (got !== payload.length || !Buffer.concat(chunks).equals(payload)) return fail(new Error('echo differs from what was sent'));
      s.pause();
      resolve(s);
    });
    const onEarlyClose = (): void => fail(new Error(`closed after ${got} of ${payload.length} bytes`));
    s.once('close', onEarlyClose);
  });
}

/**
 * Streams opened at once by the benchmark: `connect` sets up 16 at a time and lets 64 more wait
 * (service/connect.ts MAX_SETUPS, MAX_SETUPS_WAITING); more than that are reset by design.
 */
export const OPEN_CONCURRENCY = 64;

/** Opens `n` byte-exact echo streams and keeps them open (paused); `failed` counts those that did not verify. */
export async function openHeld(port: number, n: number, block: Buffer, into: Socket[]): Promise<{ failed: number; errors: string[] }> {
  const r = await pool(n, OPEN_CONCURRENCY, () => openVerified(port, block));
  into.push(...r.ok);
  return { failed: r.errors.length, errors: r.errors };
}

export async function closeAll(sockets: Socket[]): Promise<void> {
  await Promise.all(sockets.map((s) => endAndClose(s)));
}

/** Runs `task` `total` times with at most `concurrency` at once; returns results and errors. */
export async function pool<T>(total: number, concurrency: number, task: (i: number) => Promise<T>): Promise<{ ok: T[]; errors: string[] }> {
  const ok: T[] = [];
  const errors: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      try {
        ok.push(await task(i));
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
  return { ok, errors };
}

/** Keeps `concurrency` short streams going for `durationMs`; each is setupOnce (open, 1 byte, close). */
export async function sustained(port: number, concurrency: number, durationMs: number): Promise<{ completed: number; errors: string[]; seconds: number; setupMs: number[] }> {
  const start = nowMs();
  const deadline = start + durationMs;
  const setupMs: number[] = [];
  const errors: string[] = [];
  const worker = async (): Promise<void> => {
    while (nowMs() < deadline) {
      try {
        setupMs.push(await setupOnce(port));
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { completed: setupMs.length, errors, seconds: (nowMs() - start) / 1000, setupMs };
}

/** A TCP echo server (runs in its own process during the benchmark, see targets.ts). */
export async function startEcho(): Promise<Server> {
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

// The flood target is shared with the tests (test/ops-process.test.ts): one implementation.
export { startFlood, type FloodServer } from '../test/helpers/targets';

export async function stalledReader(port: number, block: Buffer): Promise<{ socket: Socket; drain: () => Promise<{ bytes: number; seconds: number; exact: boolean }> }> {
  const s = open(port);
  s.pause();
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  return {
    socket: s,
    drain: () =>
      new Promise((resolve, reject) => {
        let bytes = 0;
        let exact = true;
        const t0 = nowMs();
        s.on('data', (c: Buffer) => {
          // Compare with the pattern at this offset, in at most two pieces per block wrap.
          let off = 0;
          while (off < c.length && exact) {
            const pos = (bytes + off) % block.length;
            const n = Math.min(block.length - pos, c.length - off);
            if (block.compare(c, off, off + n, pos, pos + n) !== 0) exact = false;
            off += n;
          }
          bytes += c.length;
        });
        s.once('error', reject);
        s.once('end', () => {
          s.end();
          resolve({ bytes, seconds: (nowMs() - t0) / 1000, exact });
        });
        s.resume();
      }),
  };
}

export function payload(bytes: number): Buffer {
  return randomBytes(bytes);
}
