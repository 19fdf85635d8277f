import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastLine, runCliToEnd, startHubProcess, type CliProcess } from './helpers/cli';
import { HubClient } from '../service/hub-client';
import { isDevstreamsError, parseServiceConnectionString } from '../wire';
import { exchange, healthz, statusOf, upgradeRequest } from './helpers/hostile';

/**
 * Each finding on the hub's HTTPS port (issue 11) against the real hub process: the input that used
 * to kill it or hold memory now gets a refusal, and the hub keeps serving.
 */
describe('hostile input on the HTTPS port', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-hostile-http-'));
  let hub: CliProcess & { port: number };

  beforeAll(async () => {
    hub = await startHubProcess(join(dir, 'hub'), 0, { env: { DEVSTREAMS_LOG_LEVEL: 'debug' } });
  });
  afterAll(async () => {
    await hub?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const send = async (raw: string | Buffer): Promise<number> => statusOf((await exchange(hub.port, [raw])).data);

  it('GET // (a path that is not a URL) gets 404 and the hub keeps serving', async () => {
    expect(await send('GET // HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n')).toBe(404);
    expect(await send('GET //evil.example/x?y HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n')).toBe(404);
    expect(await healthz(hub.port)).toBe(200);
  });

  it('an upgrade to /bridges/%zz gets 400 and the hub keeps serving', async () => {
    expect(await send(upgradeRequest('/bridges/%zz'))).toBe(400);
    expect(await send(upgradeRequest('/bridges/%E0%A4%A'))).toBe(400);
    expect(await healthz(hub.port)).toBe(200);
    await hub.waitForLine(/streaming connection refused: malformed stream id/);
  });

  it('a request target that is not a path gets 400; an upgrade elsewhere 404', async () => {
    expect(await send('GET * HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n')).toBe(400);
    expect(await send('GET http://x/healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n')).toBe(400);
    expect(await send(upgradeRequest('//'))).toBe(404);
    expect(await send(upgradeRequest('*'))).toBe(400);
  });

  it('unknown paths get 404, a known path with another method 405 with Allow', async () => {
    expect(await send('GET /nope HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n')).toBe(404);
    const r = (await exchange(hub.port, ['DELETE /twins/d/streams/ssh HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n'])).data.toString();
    expect(statusOf(Buffer.from(r))).toBe(405);
    expect(r).toMatch(/\r\nallow: POST\r\n/i);
    expect(r).toContain('"errorCode":405000');
  });

  it('a body over 4 KiB gets 413, declared or streamed', async () => {
    expect(await send(`POST /twins/d/streams/ssh HTTP/1.1\r\nHost: hub\r\nConnection: close\r\nContent-Length: 1000000\r\n\r\n`)).toBe(413);
    // Unauthorized (401 at once), then a streamed body past the limit: the hub stops reading and closes.
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const chunked = `POST /twins/d/streams/ssh HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\nAuthorization: SharedAccessSignature sr=x&sig=y&se=1&skn=z\r\n\r\n`;
    const started = Date.now();
    const r = await exchange(hub.port, [chunked, `${chunk.length.toString(16)}\r\n`, chunk, '\r\n'], { waitMs: 20_000 });
    expect([401, 413]).toContain(statusOf(r.data));
    expect(r.closed).toBe(true);
    // Not the 30 s request deadline: the body limit closed it.
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("a stream name outside the agent's service-name rule gets 400 with IoT Hub's error body", async () => {
    const svc = lastLine((await runCliToEnd(['hub', 'service-string', '--data-dir', join(dir, 'hub')])).stdout);
    const client = new HubClient({ service: parseServiceConnectionString(svc), caPem: readFileSync(join(dir, 'hub', 'ca.pem')) });
    try {
      for (const name of ['a#b', 'x+y', '..', '-x', 'a'.repeat(65), 'tab\there', 'é']) {
        const err = await client.requestStream('nobody', name).catch((e: unknown) => e);
        expect(isDevstreamsError(err, 'EHUB_ERROR'), name).toBe(true);
        expect((err as Error).message).toContain('400 (400004)');
        expect((err as Error).message).toContain('service names are 1-64 of letters');
      }
      // A well-formed name passes the check and meets the next one.
      expect(isDevstreamsError(await client.requestStream('nobody', 'ssh').catch((e: unknown) => e), 'EUNKNOWN_DEVICE')).toBe(true);
    } finally {
      client.close();
    }
  });

  it('a header block over 16 KiB gets 431; garbage gets 400; the connection closes', async () => {
    const big = `GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\nX-Pad: ${'a'.repeat(20_000)}\r\n\r\n`;
    const r = await exchange(hub.port, [big]);
    expect(statusOf(r.data)).toBe(431);
    expect(r.closed).toBe(true);
    expect(await send('\x00\x01\x02 garbage\r\n\r\n')).toBe(400);
    expect(await send('GET /healthz HTTP/9.9\r\n\r\n')).toBe(400);
    expect(await healthz(hub.port)).toBe(200);
  });

  it('a connection that never finishes its headers is closed within the headers deadline', async () => {
    const started = Date.now();
    const r = await exchange(hub.port, ['GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n'], { waitMs: 45_000 });
    expect(r.closed).toBe(true);
    // HTTP_HEADERS_TIMEOUT_MS is 10 s; Node checks every second or so.
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 60_000);

  it('a TLS handshake that never completes is cut within the handshake deadline', async () => {
    const started = Date.now();
    const r = await exchange(hub.port, [], { tls: false, waitMs: 45_000 });
    expect(r.closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 60_000);
});
