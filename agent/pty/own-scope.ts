import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Logger } from '../../core/log';
import { printableAscii } from '../../core/terminal-text';

/**
 * Under systemd, each shell session leaves the agent's control group for a transient scope of its
 * own (`systemd-run --scope`, in devstreams-shells.slice), so what a shell user runs is not a member
 * of devstreams-agent.service:
 * - the unit's `NotifyAccess=all` accepts sd_notify messages from members of its control group only,
 *   so a shell user cannot send WATCHDOG=trigger, STOPPING=1, READY=1 or MAINPID= for the agent
 *   (the agent itself must keep `all`: it notifies through the systemd-notify helper, see
 *   agent/sd-notify.ts and docs/security.md);
 * - the agent's MemoryMax/TasksMax are not spent by a shell's processes (a fork bomb or a big build
 *   in a shell cannot get the agent OOM-killed);
 * - a restart of the agent does not take the shells down with its cgroup (the agent still ends
 *   each session it started, by process group, when it stops).
 * Used when the agent runs as root (the shell drop-in) as a systemd service (INVOCATION_ID) on a
 * systemd-booted machine where a probe of systemd-run --scope succeeds; otherwise the command runs
 * as before.
 */
export const SHELL_SLICE = 'devstreams-shells.slice';

const SYSTEMD_RUN = ['/usr/bin/systemd-run', '/bin/systemd-run'];
let sessions = 0;

/** How long the one-time probe may take (it runs before the first shell session, synchronously). */
const PROBE_TIMEOUT_MS = 3000;
let probed: { path: string | undefined } | undefined;

/**
 * systemd-run's path when shells can get scopes of their own; undefined otherwise. The first call
 * (the first shell session) tries it once, `systemd-run --scope /bin/true`, from inside the agent's
 * sandbox: where that fails (a bus policy, a stricter unit), shells run in the agent's cgroup as
 * before and the log says why, rather than every session failing.
 */
export function systemdRunForScopes(log?: Logger, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (probed) return probed.path;
  if (process.getuid?.() !== 0 || !env.INVOCATION_ID || !existsSync('/run/systemd/system')) return (probed = { path: undefined }).path;
  const path = SYSTEMD_RUN.find((p) => existsSync(p));
  if (!path) return (probed = { path: undefined }).path;
  const r = spawnSync(path, ['--scope', '--quiet', '--collect', `--unit=devstreams-shell-probe-${process.pid}`, '--', '/bin/true'], { timeout: PROBE_TIMEOUT_MS, encoding: 'utf8' });
  if (r.status === 0) {
    log?.info({ slice: SHELL_SLICE }, 'shell sessions run in systemd scopes of their own');
    return (probed = { path }).path;
  }
  const why = (r.stderr ?? '').trim().split('\n')[0] || r.error?.message || `exit ${String(r.status)}`;
  log?.warn({ err: why }, "systemd-run --scope does not work here: shell sessions stay in the agent's control group (docs/security.md)");
  return (probed = { path: undefined }).path;
}

/** `file args` wrapped to run in a scope of its own when systemdRun is given; unchanged otherwise. */
export function inOwnScope(file: string, args: string[], systemdRun: string | undefined, describe: string): { file: string; args: string[] } {
  if (!systemdRun) return { file, args };
  sessions++;
  return {
    file: systemdRun,
    args: [
      '--scope',
      '--quiet',
      '--collect',
      `--unit=devstreams-shell-${process.pid}-${sessions}`,
      `--slice=${SHELL_SLICE}`,
      `--description=devstreams shell: ${printableAscii(describe, 100)}`,
      '--',
      file,
      ...args,
    ],
  };
}
