import { monitorEventLoopDelay } from 'node:perf_hooks';
import { statfsSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { describe, expect, it } from 'vitest';
import { readHealth, HEALTH_SCHEMA } from '../agent/telemetry';
import type { StatusSnapshot } from '../agent/status';

/** Health readings on this machine, for real: figures that make sense, and a loop that keeps turning. */
const NOW = new Date().toISOString();
const snapshot: StatusSnapshot = {
  version: 'test',
  pid: process.pid,
  device: 'pi-health',
  hub: '127.0.0.1',
  started_at: NOW,
  updated_at: NOW,
  connection: { state: 'connected', since: NOW, reconnects: 0 },
  streams: { active: [], total: 0, refused_total: 0 },
  bytes: { to_target: 0, from_target: 0 },
  recent_refusals: [],
};

const MAX_BLOCK_MS = 2;
const READINGS = 5;
/** Tries until one is clean: a loaded machine (other test files, CI neighbours) delays a few. */
const TRIES = 20;
const RESOLUTION_MS = 1;

/** The longest the event loop waited beyond its 1 ms timer while `fn` ran. */
async function worstLoopDelayMs(fn: () => Promise<void>): Promise<number> {
  const h = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  h.enable();
  try {
    await fn();
  } finally {
    h.disable();
  }
  return h.max / 1e6 - RESOLUTION_MS;
}

describe('health telemetry readings', () => {
  it('reads figures that make sense', async () => {
    const h = await readHealth(snapshot);
    expect(h.schema).toBe(HEALTH_SCHEMA);
    expect(h.uptime_s).toBeGreaterThan(0);
    expect(h.cpu.load_pct).toBeGreaterThanOrEqual(0);
    expect(h.cpu.load_pct).toBeLessThanOrEqual(100);
    expect(h.memory!.total_bytes).toBeGreaterThan(h.memory!.available_bytes);
    const root = h.disks!.find((d) => d.mount === '/')!;
    const s = statfsSync('/');
    expect(root.size_bytes).toBe(s.blocks * s.bsize);
    expect(root.used_pct).toBeGreaterThan(0);
    expect(h.network!.every((n) => n.iface !== 'lo' && n.rx_bytes >= 0)).toBe(true);
    expect(h.agent.rss_bytes).toBeGreaterThan(0);
  });

  // A reader that blocks (execSync, a sync read) blocks on every reading; a busy machine delays a
  // loop now and then. So: the worst delay over five readings, in the best of up to twenty tries,
  // stays under 2 ms (a quiet try measures ~0.1 ms here; the systeminformation readers took
  // 60-120 ms every try, so no number of tries lets them pass).
  //
  // On a machine busy with other work (CI's other test files), the loop's timer also waits for a CPU
  // after every sleep: scheduler latency, not our code. Where we may (root, as in CI), the event-loop
  // thread runs at the highest priority while it measures, so what remains is what the readings do.
  it(`never blocks the event loop for more than ${MAX_BLOCK_MS} ms`, async () => {
    const before = getPriority(0);
    try {
      setPriority(0, -20);
    } catch {
      // not permitted: measured at normal priority (a quiet machine passes as well)
    }
    try {
      await measure();
    } finally {
      try {
        setPriority(0, before);
      } catch {
        // going back to a lower priority is always permitted; nothing else to do
      }
    }
  });
});

/** Warm-up, then the best of up to TRIES tries: the worst loop delay over READINGS readings. */
async function measure(): Promise<void> {
  // Warm-up, not counted: the first readings compile the readers' code and open their files.
  await worstLoopDelayMs(async () => {
    for (let i = 0; i < READINGS; i++) await readHealth(snapshot);
  });
  const tries: number[] = [];
  for (let attempt = 0; attempt < TRIES; attempt++) {
    tries.push(
      await worstLoopDelayMs(async () => {
        for (let i = 0; i < READINGS; i++) await readHealth(snapshot);
      }),
    );
    if (tries.at(-1)! <= MAX_BLOCK_MS) break;
  }
  expect(Math.min(...tries), `worst loop delay per try (ms): ${tries.map((t) => t.toFixed(2)).join(', ')}`).toBeLessThanOrEqual(MAX_BLOCK_MS);
}
