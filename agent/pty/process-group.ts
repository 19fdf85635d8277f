import { readdirSync, readFileSync } from 'node:fs';

/** After SIGHUP (what a terminal hang-up sends), how long the session gets before SIGTERM. */
export const HUP_GRACE_MS = 2_000;
/** After SIGTERM, how long before SIGKILL. */
export const TERM_GRACE_MS = 3_000;
/** After SIGKILL, how long we wait for the kernel to finish them before giving up and reporting. */
export const KILL_WAIT_MS = 2_000;
const POLL_MS = 50;

interface ProcStat {
  pid: number;
  state: string;
  pgrp: number;
  session: number;
}

function readStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // comm (field 2) may hold spaces and parentheses: the fields after the last ')' are fixed.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { pid, state: rest[0] ?? '?', pgrp: Number(rest[2]), session: Number(rest[3]) };
  } catch {
    return undefined; // gone meanwhile
  }
}

/**
 * Live (non-zombie) processes of a terminal session: every process whose session id is the PTY's
 * leader, which covers the leader's process group and the groups job control made for background
 * jobs. A process that called setsid() itself has left the session and is not found here (only a
 * cgroup could follow it).
 */
export function sessionMembers(sid: number): number[] {
  if (!Number.isInteger(sid) || sid <= 1) return [];
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (st && st.session === sid && st.state !== 'Z' && st.state !== 'X') out.push(st.pid);
  }
  return out;
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone, or not ours to signal
    }
  }
}

export interface EndSessionResult {
  /** The last signal that had to be sent, or none when the session was already empty. */
  lastSignal?: NodeJS.Signals;
  /** Processes still alive after SIGKILL (should be none; reported, never hidden). */
  left: number[];
}

/**
 * Ends every process of a terminal session: SIGHUP, then SIGTERM after HUP_GRACE_MS, then SIGKILL
 * after TERM_GRACE_MS, stopping as soon as none is left.
 */
export async function endSession(
  sid: number,
  grace: { hupMs?: number; termMs?: number; killMs?: number } = {},
): Promise<EndSessionResult> {
  const steps: [NodeJS.Signals, number][] = [
    ['SIGHUP', grace.hupMs ?? HUP_GRACE_MS],
    ['SIGTERM', grace.termMs ?? TERM_GRACE_MS],
    ['SIGKILL', grace.killMs ?? KILL_WAIT_MS],
  ];
  let lastSignal: NodeJS.Signals | undefined;
  for (const [signal, waitMs] of steps) {
    const members = sessionMembers(sid);
    if (members.length === 0) return { ...(lastSignal ? { lastSignal } : {}), left: [] };
    // A stopped job ignores everything but SIGKILL until it is continued.
    signalAll(members, signal);
    if (signal !== 'SIGKILL') signalAll(members, 'SIGCONT');
    lastSignal = signal;
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline && sessionMembers(sid).length > 0) await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return { ...(lastSignal ? { lastSignal } : {}), left: sessionMembers(sid) };
}
