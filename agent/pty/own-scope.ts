import { existsSync } from 'node:fs';

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
 * systemd-booted machine with systemd-run; otherwise the command runs as before.
 */
export const SHELL_SLICE = 'devstreams-shells.slice';

const SYSTEMD_RUN = ['/usr/bin/systemd-run', '/bin/systemd-run'];
let sessions = 0;

export function systemdRunForScopes(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (process.getuid?.() !== 0 || !env.INVOCATION_ID || !existsSync('/run/systemd/system')) return undefined;
  return SYSTEMD_RUN.find((p) => existsSync(p));
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
      `--description=devstreams shell: ${describe.replace(/[^\x20-\x7e]/g, '?').slice(0, 100)}`,
      '--',
      file,
      ...args,
    ],
  };
}
