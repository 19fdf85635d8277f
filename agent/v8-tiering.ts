import { setFlagsFromString } from 'node:v8';

/** `DEVSTREAMS_AGENT_TURBOFAN=1` keeps V8's top-tier compiler in the agent (for measuring it, or for throughput). */
export const KEEP_TURBOFAN_ENV = 'DEVSTREAMS_AGENT_TURBOFAN';

/** The first Node major whose V8 runs Maglev, its mid-tier optimizing compiler, by default. */
const MAGLEV_NODE_MAJOR = 22;

/**
 * Leaves V8's top-tier optimizing compiler (TurboFan) out of the agent where Maglev, the mid-tier
 * one, stays on (Node 22 and later): hot functions stop at Maglev's code. The agent is idle almost
 * always; its start and every stream's TLS and WebSocket paths made TurboFan compile, which touched
 * the compiler's own code in Node's binary (file pages that stay resident) and its larger code.
 * x64 executable with the unit's environment, two copies each, same run (docs/benchmarks.md): idle
 * 76.4/76.7 -> 71.3/71.2 MB RSS, 60 s after 500 streams closed 80.2/81.1 -> 75.0/74.5 MB. Agent
 * CPU per GiB: +16 % upload, +9 % download with the unit's old MALLOC_MMAP_THRESHOLD_=16384; with
 * 65536 and today's tunnel, upload 2.50 -> 1.42 s and download 2.78 -> 2.72 s (TurboFan's code was
 * the slower one after its first round). On older Node (the armhf package's system nodejs) Maglev is
 * off, and leaving TurboFan out would leave only the baseline compiler (+28 % upload measured that
 * way): there it stays.
 *
 * V8 reads the flag whenever it decides to optimize a function, so setting it at the agent's start,
 * before any of its code is hot, has the command-line flag's effect. Returns whether it was set.
 */
export function leaveOutTurbofan(env: NodeJS.ProcessEnv = process.env, nodeVersion = process.versions.node): boolean {
  if (env[KEEP_TURBOFAN_ENV] === '1') return false;
  if (Number(nodeVersion.split('.')[0]) < MAGLEV_NODE_MAJOR) return false;
  setFlagsFromString('--no-turbofan');
  return true;
}
