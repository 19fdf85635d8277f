import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { HubDataDir } from '../hub/data-dir';
import { newStreamId, signStreamToken } from '../hub/stream-tokens';
import { startStack, until, type Stack } from './helpers/stack';
import { startEchoServer } from './helpers/targets';

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    if (ws.isPaused) ws.resume();
  });
}

/** The streaming endpoint's own rules: the handshake deadline, and one side's end ending the other. */
describe('hub streaming endpoint', () => {
  let stack: Stack;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;

  beforeAll(async () => {
    stack = await startStack({ handshakeTimeoutMs: 1500 });
    echo = await startEchoServer();
    await stack.startAgent(`  echo:\n    port: ${echo.port}\n`);
  });
  afterAll(async () => {
    await stack?.stop();
    await echo?.close();
  });

  it('closes a side whose partner never comes with 4002 once the handshake timeout passes', async () => {
    const key = new HubDataDir(stack.dir).secrets().stream_signing_key;
    const streamId = newStreamId();
    const token = signStreamToken(key, { streamId, side: 'service', deviceId: 'pi-001', exp: Date.now() + 60_000 });
    const url = `wss://${stack.hub.host}/bridges/${streamId}`;
    const ws = await stack.client.openStream({ url, authToken: token });
    const started = Date.now();
    const { code, reason } = await closed(ws);
    expect(code).toBe(4002);
    expect(reason).toMatch(/the device did not connect within/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
  });

  it('ends the device side when the service side closes', async () => {
    const ws = await stack.client.openStream(await stack.client.requestStream('pi-001', 'echo'));
    ws.resume();
    const echoed = new Promise<Buffer>((r) => ws.on('message', (d, isBinary) => isBinary && r(d as Buffer)));
    ws.send(Buffer.from('ping'));
    expect((await echoed).toString()).toBe('ping');
    await until(() => stack.hub.activeStreams === 1, 'the stream to be joined');
    ws.close(1000);
    await closed(ws);
    await until(() => stack.hub.activeStreams === 0, 'the hub to close the device side too');
  });

  it('passes a FIN from the device target on as eof, and a reset as 4003 with a reason', async () => {
    const sockets: Socket[] = [];
    const target = createServer({ allowHalfOpen: true }, (sock) => sockets.push(sock));
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
    const port = (target.address() as AddressInfo).port;
    const agent = await stack.startAgent(`  t:\n    port: ${port}\n`, { deviceId: 'pi-fin' });

    const ws1 = await stack.client.openStream(await stack.client.requestStream('pi-fin', 't'));
    const text = new Promise<string>((r) => ws1.on('message', (d, isBinary) => !isBinary && !d.toString().includes('hello') && r(d.toString())));
    ws1.resume();
    await until(() => sockets.length === 1, 'the agent to reach the target');
    sockets[0]!.end();
    expect(JSON.parse(await text)).toEqual({ type: 'eof' });
    ws1.close(1000);
    await closed(ws1);

    const ws2 = await stack.client.openStream(await stack.client.requestStream('pi-fin', 't'));
    const end = closed(ws2);
    await until(() => sockets.length === 2, 'the agent to reach the target again');
    sockets[1]!.resetAndDestroy();
    const { code, reason } = await end;
    expect(code).toBe(4003);
    expect(reason).toMatch(/ECONNRESET/);
    await until(() => agent.activeStreams === 0, 'the agent to free both streams');
    target.close();
  });
});
