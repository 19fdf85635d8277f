import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closedPort, duplexClient, random, roundTrip, sendAndHalfClose, sha256, startDuplexTarget, startEchoServer } from './helpers/targets';
import { startStack, type Stack } from './helpers/stack';
import { isDevstreamsError, parseServiceConnectionString } from '../wire';
import { HubClient } from '../service/hub-client';

describe('TCP stream through hub and agent', () => {
  let stack: Stack;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let connectPort: number;
  let duplexPort: number;
  let duplex: Awaited<ReturnType<typeof startDuplexTarget>>;
  const fromDevice = random(64 * 1024 * 1024);

  beforeAll(async () => {
    stack = await startStack();
    echo = await startEchoServer();
    const refused = await closedPort();
    duplex = await startDuplexTarget(fromDevice);
    await stack.startAgent(`  echo:\n    port: ${echo.port}\n  dead:\n    port: ${refused}\n  duplex:\n    port: ${duplex.port}\n`);
    connectPort = (await stack.connect('pi-001', 'echo')).address.port;
    duplexPort = (await stack.connect('pi-001', 'duplex')).address.port;
  });
  afterAll(async () => {
    await stack?.stop();
    await echo?.close();
    await duplex?.close();
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

  it('moves 64 MiB each way at once, byte-exact (compared by hash)', async () => {
    const toDevice = random(64 * 1024 * 1024);
    const [atClient, atTarget] = await Promise.all([duplexClient(duplexPort, toDevice), duplex.received()]);
    expect(atTarget).toEqual({ bytes: toDevice.length, sha256: sha256(toDevice) });
    expect(atClient).toEqual({ bytes: fromDevice.length, sha256: sha256(fromDevice) });
  }, 120_000);

  it('carries 50 streams at once, each byte-exact', async () => {
    const payloads = Array.from({ length: 50 }, (_, i) => random(64 * 1024 + i * 997));
    const results = await Promise.all(payloads.map((p) => roundTrip(connectPort, p)));
    results.forEach((r, i) => expect(sha256(r)).toBe(sha256(payloads[i]!)));
  }, 120_000);

  it('keeps listening after a failed stream', async () => {
    const failing = await stack.connect('pi-001', 'dead');
    const first = await sendAndHalfClose(failing.address.port, Buffer.from('x'));
    expect(first.data.length).toBe(0);
    const again = await sendAndHalfClose(failing.address.port, Buffer.from('x'));
    expect(again.data.length).toBe(0);
    expect(await roundTrip(connectPort, Buffer.from('still fine'))).toEqual(Buffer.from('still fine'));
  });

  it('says when the device is unknown', async () => {
    const err = await stack.client.requestStream('no-such-device', 'echo').catch((e: unknown) => e);
    expect(isDevstreamsError(err, 'EUNKNOWN_DEVICE')).toBe(true);
    expect((err as Error).message).toMatch(/unknown device "no-such-device"/);
  });

  it('says when the device is registered but offline', async () => {
    stack.deviceConnectionString('pi-offline');
    const err = await stack.client.requestStream('pi-offline', 'echo').catch((e: unknown) => e);
    expect(isDevstreamsError(err, 'EDEVICE_OFFLINE')).toBe(true);
    expect((err as Error).message).toMatch(/not connected/);
  });

  it('says when the service key is wrong', async () => {
    const good = parseServiceConnectionString(stack.serviceConnectionString);
    const wrong = new HubClient({ service: { ...good, sharedAccessKey: Buffer.from('wrong key of 32 bytes, padded...').toString('base64') }, caPem: stack.caPem });
    const err = await wrong.requestStream('pi-001', 'echo').catch((e: unknown) => e);
    wrong.close();
    expect(isDevstreamsError(err, 'EUNAUTHORIZED')).toBe(true);
    expect((err as Error).message).toMatch(/refused the service credentials.*DEVSTREAMS_CONNECTION_STRING/);
  });

  it('says when the hub certificate is not trusted, naming the CA in use', async () => {
    const untrusting = new HubClient({ service: parseServiceConnectionString(stack.serviceConnectionString) });
    const err = await untrusting.requestStream('pi-001', 'echo').catch((e: unknown) => e);
    untrusting.close();
    expect(isDevstreamsError(err, 'ECERT_UNTRUSTED')).toBe(true);
    expect((err as Error).message).toMatch(/not trusted.*no CA file is configured/);
  });

  it('says when the hub cannot be reached', async () => {
    const port = await closedPort();
    const good = parseServiceConnectionString(stack.serviceConnectionString);
    const nowhere = new HubClient({ service: { ...good, hostName: `127.0.0.1:${port}` }, caPem: stack.caPem });
    const err = await nowhere.requestStream('pi-001', 'echo').catch((e: unknown) => e);
    nowhere.close();
    expect(isDevstreamsError(err, 'EHUB_UNREACHABLE')).toBe(true);
    expect((err as Error).message).toMatch(/connection refused/);
  });
});
