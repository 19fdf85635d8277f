import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closedPort, random, roundTrip, sendAndHalfClose, sha256, startEchoServer } from './helpers/targets';
import { startStack, type Stack } from './helpers/stack';
import { isDevstreamsError } from '../wire';

describe('TCP stream through hub and agent', () => {
  let stack: Stack;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let connectPort: number;

  beforeAll(async () => {
    stack = await startStack();
    echo = await startEchoServer();
    const refused = await closedPort();
    await stack.startAgent(`  echo:\n    port: ${echo.port}\n  dead:\n    port: ${refused}\n`);
    connectPort = (await stack.connect('pi-001', 'echo')).address.port;
  });
  afterAll(async () => {
    await stack?.stop();
    await echo?.close();
  });

  it('echoes a small message', async () => {
    const back = await roundTrip(connectPort, Buffer.from('foo'));
    expect(back.toString()).toBe('foo');
  });

  it('delivers everything sent before a half-close, and the reply after it', async () => {
    const payload = random(300_000);
    const { data, error } = await sendAndHalfClose(connectPort, payload);
    expect(error).toBeUndefined();
    expect(sha256(data)).toBe(sha256(payload));
  });

  it('refuses a service outside the allowlist, and says so', async () => {
    const err = await stack.client.requestStream('pi-001', 'not-allowed').catch((e: unknown) => e);
    expect(isDevstreamsError(err, 'EDEVICE_REFUSED')).toBe(true);
    expect((err as Error).message).toMatch(/not-allowed.*not in the device's allowlist/);
  });

  it('closes with a reason when the local target refuses', async () => {
    const accepted = await stack.client.requestStream('pi-001', 'dead');
    const ws = await stack.client.openStream(accepted);
    const close = await new Promise<{ code: number; reason: string }>((resolve) => {
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
      ws.resume();
    });
    expect(close.code).toBe(4001);
    expect(close.reason).toMatch(/refused the connection/);
  });
});
