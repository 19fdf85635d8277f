import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/agent';
import type { EmbeddedBroker } from '../hub/broker';
import { startStack, until, type Stack } from './helpers/stack';
import { roundTrip, startEchoServer } from './helpers/targets';

/** Deterministic PRNG (mulberry32): a failing case can be replayed from the seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A TCP listener that must never be connected to: it counts every connection. */
async function canary(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let n = 0;
  const server: Server = createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, connections: () => n, close: () => new Promise((r) => server.close(() => r())) };
}

const FUZZ_CASES = 10_000;

/**
 * Hostile stream requests: broken topics and property bags, unknown services (including prototype
 * names), URLs with other schemes, credentials, hosts or ports, bad percent-encoding, odd tokens.
 * Every one must be refused without dialing anything. `answerable` cases carry a well-formed request
 * id and must get a 400 back.
 */
function hostileRequests(seed: number, hub: string, canaryPort: number): Array<{ topic: string; answerable: boolean }> {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const junk = (max: number): string => {
    const alphabet = 'abcXYZ019/?&=$%#+.-_~:@[]{}<>"\' \u00e9\u4e2d\ud83d\ude00\t\\';
    return Array.from({ length: Math.floor(rnd() * max) }, () => pick([...alphabet])).join('');
  };
  const [hubHost, hubPort] = hub.split(':') as [string, string];
  const badServices = ['nope', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'ECHO', 'echo ', '..', 'echo%2F', 'a'.repeat(300), '\u00e9cho', ''];
  const goodService = 'echo';
  const badUrls = [
    `ws://${hub}/bridges/x`,
    `http://${hub}/bridges/x`,
    `https://${hub}/bridges/x`,
    `file:///etc/passwd`,
    `javascript:alert(1)`,
    `wss://user:pass@${hub}/bridges/x`,
    `wss://:pass@${hub}/bridges/x`,
    `wss://127.0.0.1:${canaryPort}/bridges/x`,
    `wss://localhost:${canaryPort}/`,
    `wss://[::1]:${canaryPort}/`,
    `wss://${hubHost}:${canaryPort}/`,
    `wss://${hubHost}/bridges/x`,
    `wss://${hubHost}:0/`,
    `wss://${hubHost}:99999/`,
    `wss://evil.example/bridges/x`,
    `wss://${hubHost}.evil.example:${hubPort}/`,
    `wss://x.azure-devices.net/`,
    `wss://2130706433:${canaryPort}/`,
    `wss://0x7f.1:${canaryPort}/`,
    `wss://${hub}@evil.example/`,
    `wss://evil.example#@${hub}/`,
    `wss:${hubHost}:${canaryPort}`,
    `not a url`,
    `wss://`,
    `wss://${'a'.repeat(5000)}.example/`,
  ];
  const encode = (u: string): string => (rnd() < 0.8 ? encodeURIComponent(u) : u);
  const rid = (): string => (rnd() < 0.9 ? String(Math.floor(rnd() * 1e9)) : pick(['a.b-c_d', 'x'.repeat(64)]));
  const badRids = ['', '+', '#', 'a/b', 'x'.repeat(65), '1 2', '%23', '\u00e9', '..;', 'a\u0000b'.replace('\u0000', '!')];
  const auth = (): string => pick(['token', '', 'a'.repeat(20_000), '%', 'Bearer x', junk(40)]);
  const cases: Array<{ topic: string; answerable: boolean }> = [];
  for (let i = 0; i < FUZZ_CASES; i++) {
    const kind = i % 10;
    let topic: string;
    let answerable = false;
    switch (kind) {
      case 0: // wrong prefix or verb
        topic = pick(['$iothub/streams/GET/', '$iothub/stream/POST/', 'devices/pi/streams/POST/', '$iothub/streams/', '', '$IOTHUB/STREAMS/post']) + `${goodService}/?$rid=${rid()}&$url=${encodeURIComponent(`wss://${hub}/bridges/x`)}&$auth=t`;
        break;
      case 1: // wrong number of levels
        topic = `$iothub/streams/POST/${pick([goodService, '', `${goodService}/extra`, `${goodService}/a/b`])}${pick(['', '/', '//'])}`;
        break;
      case 2: // missing or empty properties
        topic = `$iothub/streams/POST/${goodService}/` + pick([`?$rid=${rid()}`, `?$rid=${rid()}&$url=&$auth=t`, `?$rid=${rid()}&$url=${encodeURIComponent(`wss://${hub}/`)}`, `?$url=x&$auth=y`, '?', '&&&', '=', `$rid=${rid()}&$auth=t`]);
        break;
      case 3: // bad percent-encoding of the URL
        topic = `$iothub/streams/POST/${goodService}/?$rid=${rid()}&$url=${pick(['%E0%A4%A', '%', '%zz', '%C0%AF', '%ED%A0%80'])}&$auth=t`;
        break;
      case 4: // unknown service, otherwise a perfect request to the hub
        topic = `$iothub/streams/POST/${encodeURIComponent(pick(badServices)) || 'x'}/?$rid=${rid()}&$url=${encodeURIComponent(`wss://${hub}/bridges/abc`)}&$auth=t`;
        answerable = true;
        break;
      case 5:
      case 6: // allowed service, hostile URL
        topic = `$iothub/streams/POST/${goodService}/?$rid=${rid()}&$url=${encode(pick(badUrls))}&$auth=${encodeURIComponent(auth())}`;
        answerable = !topic.slice('$iothub/streams/POST/echo/'.length).includes('/');
        break;
      case 7:
        if (i % 20 === 7) {
          // allowed service and URL, but a token that cannot be a header value (header injection, non-ASCII)
          const token = pick(['a b', '\u00e9t\u00e9', 'x\r\nX-Injected: 1', 'tab\there', '\u4e2d', 'x\ny']);
          topic = `$iothub/streams/POST/${goodService}/?$rid=${rid()}&$url=${encodeURIComponent(`wss://${hub}/bridges/abc`)}&$auth=${token}`;
          answerable = true;
          break;
        }
        // unsafe request ids: they would become part of our response topic
        topic = `$iothub/streams/POST/${goodService}/?$rid=${pick(badRids)}&$url=${encodeURIComponent(`wss://127.0.0.1:${canaryPort}/`)}&$auth=t`;
        break;
      case 8: // junk
        topic = junk(200);
        break;
      default: // junk property bag
        topic = `$iothub/streams/POST/${goodService}/?${junk(120)}`;
    }
    // MQTT forbids wildcards in a PUBLISH topic; the broker would never deliver one.
    if (topic.includes('#') || topic.includes('+') || topic === '') {
      topic = `$iothub/streams/POST/nope/?$rid=${i}&$url=x&$auth=y`;
      answerable = true;
    }
    cases.push({ topic, answerable });
  }
  return cases;
}

describe('hostile stream requests (fuzz)', () => {
  let stack: Stack;
  let agent: Agent;
  let trap: Awaited<ReturnType<typeof canary>>;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;

  beforeAll(async () => {
    stack = await startStack();
    trap = await canary();
    echo = await startEchoServer();
    // The one allowed service points at the canary too: a request that slipped through would dial it.
    agent = await stack.startAgent(`  echo:\n    port: ${trap.port}\n  real:\n    port: ${echo.port}\ntelemetry:\n  interval: off\n`, { deviceId: 'pi-fuzz' });
  });
  afterAll(async () => {
    await stack?.stop();
    await trap?.close();
    await echo?.close();
  });

  it(`refuses ${FUZZ_CASES} malformed or hostile requests without dialing anything, and keeps working`, async () => {
    const seed = Number(process.env.FUZZ_SEED ?? 20261122);
    const cases = hostileRequests(seed, stack.hub.host, trap.port);
    const broker = (stack.hub as unknown as { broker: EmbeddedBroker }).broker;
    let answered400 = 0;
    let answered200 = 0;
    broker.on('stream-response', (device, status) => {
      if (device !== 'pi-fuzz') return;
      if (status === 400) answered400++;
      else answered200++;
    });
    const refusedBefore = agent.stats.refusedTotal;
    for (let i = 0; i < cases.length; i++) {
      expect(stack.hub.sendRawToDevice('pi-fuzz', cases[i]!.topic), `seed ${seed} case ${i}`).toBe(true);
      // Let the socket drain now and then rather than queueing 10,000 writes at once.
      if (i % 500 === 499) await new Promise((r) => setImmediate(r));
    }
    await until(() => agent.stats.refusedTotal - refusedBefore >= cases.length, `all ${cases.length} requests to be refused (seed ${seed})`, 60_000).catch((err: Error) => {
      const s = agent.snapshot();
      throw new Error(`${err.message}: ${s.streams.refused_total - refusedBefore} refused, ${s.streams.total} accepted, ${s.connection.reconnects} reconnects, connected ${agent.connected}`);
    });
    expect(agent.stats.refusedTotal - refusedBefore).toBe(cases.length);
    const answerable = cases.filter((c) => c.answerable).length;
    await until(() => answered400 >= answerable, `${answerable} refusals (400) at the hub`, 30_000);
    expect(answered200).toBe(0);
    expect(agent.stats.streamsTotal).toBe(0);
    expect(agent.activeStreams).toBe(0);
    expect(trap.connections()).toBe(0);
    expect(stack.hub.activeStreams).toBe(0);
    // The connection to the hub survived all of it, and a real stream still works.
    expect(agent.snapshot().connection.reconnects).toBe(0);
    expect(agent.connected).toBe(true);
    const port = (await stack.connect('pi-fuzz', 'real')).address.port;
    expect((await roundTrip(port, Buffer.from('still here'))).toString()).toBe('still here');
    expect(trap.connections()).toBe(0);
  }, 180_000);
});
