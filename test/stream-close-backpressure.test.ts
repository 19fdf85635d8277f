import { createServer, connect as netConnect, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, until, type Stack } from './helpers/stack';
import type { Agent } from '../agent/agent';

/**
 * Found by the benchmark: a stream closed while backpressure had paused a WebSocket stayed open for
 * ws's 30 s close timeout, because the paused side never read the other end's close frame. A
 * closing side must read again; the stream must end well inside those 30 s.
 */
describe('closing a stream under backpressure', () => {
  let stack: Stack;
  let agent: Agent;
  let flood: Server;
  const targets = new Set<Socket>();
  let written = 0;
  let connectPort: number;
  const block = Buffer.alloc(64 * 1024, 0x5a);

  beforeAll(async () => {
    stack = await startStack();
    // The device side writes for as long as it may (respecting its own backpressure).
    flood = createServer((s) => {
      targets.add(s);
      s.on('close', () => targets.delete(s));
      s.on('error', () => undefined);
      const pump = (): void => {
        while (!s.destroyed) {
          written += block.length;
          if (!s.write(block)) return void s.once('drain', pump);
        }
      };
      pump();
    });
    await new Promise<void>((r) => flood.listen(0, '127.0.0.1', r));
    agent = await stack.startAgent(`  flood:\n    port: ${(flood.address() as AddressInfo).port}\n`);
    connectPort = (await stack.connect('pi-001', 'flood')).address.port;
  });
  afterAll(async () => {
    await stack?.stop();
    for (const s of targets) s.destroy();
    await new Promise<void>((r) => (flood ? flood.close(() => r()) : r()));
  });

  it('ends the stream at once when a stalled reader resets, not after 30 s', async () => {
    const client = netConnect({ host: '127.0.0.1', port: connectPort });
    client.on('error', () => undefined);
    client.pause(); // never reads: every buffer on the way fills and every pump pauses
    await until(() => agent.activeStreams === 1 && written > 0, 'the stream to open and the flood to start');
    // Backpressure has reached the device side once the flood stops making progress.
    let last = -1;
    let since = Date.now();
    await until(() => {
      if (written !== last) {
        last = written;
        since = Date.now();
      }
      return Date.now() - since >= 300;
    }, 'the flood to stall');
    const before = Date.now();
    client.resetAndDestroy();
    await until(() => agent.activeStreams === 0 && targets.size === 0, 'the agent to end the stream', 10_000);
    expect(Date.now() - before).toBeLessThan(10_000);
  });
});
