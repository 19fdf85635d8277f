import { readFileSync } from 'node:fs';
import type { ServiceConfig } from '../config';

export const ETC_SHELLS = '/etc/shells';

/** The shells /etc/shells lists (comments and blank lines skipped); empty when it cannot be read. */
export function listedShells(file = ETC_SHELLS): Set<string> {
  try {
    return new Set(
      readFileSync(file, 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#')),
    );
  } catch {
    return new Set();
  }
}

/**
 * Checks the schema cannot make: a PTY command must be a login shell listed in /etc/shells, unless
 * the service says `allow_any_command: true` (the same rule as mender-connect and chsh).
 */
export function ptyServiceProblems(services: Record<string, ServiceConfig>, shellsFile = ETC_SHELLS): { path: string[]; message: string }[] {
  const problems: { path: string[]; message: string }[] = [];
  let shells: Set<string> | undefined;
  for (const [name, svc] of Object.entries(services)) {
    if (!('pty' in svc) || svc.pty.allow_any_command) continue;
    shells ??= listedShells(shellsFile);
    if (!shells.has(svc.pty.command)) {
      problems.push({
        path: ['services', name, 'pty', 'command'],
        message: `services.${name}.pty.command: ${svc.pty.command} is not listed in ${shellsFile} (list it there, or set allow_any_command: true)`,
      });
    }
  }
  return problems;
}
