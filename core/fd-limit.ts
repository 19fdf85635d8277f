import { readFileSync } from 'node:fs';

/**
 * Backlog for our listening sockets: Node's default is 511; the kernel caps it at
 * net.core.somaxconn (4096 on current kernels), so bursts of connections are queued, not dropped.
 */
export const LISTEN_BACKLOG = 4096;

/**
 * This process's soft limit on open descriptors (`ulimit -n`), from /proc; undefined where unknown.
 * Read once at load: when descriptors have run out, /proc cannot be opened either.
 */
export function openFilesLimit(): number | undefined {
  return LIMIT_AT_LOAD;
}

function readOpenFilesLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft && /^\d+$/.test(soft) ? Number(soft) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether an error is descriptor exhaustion (per process or system-wide). */
export function isFdExhaustion(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EMFILE' || code === 'ENFILE';
}

/** Names the limit and how to raise it: `too many open files (EMFILE): the limit is 1024 ...`. */
export function describeFdExhaustion(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENFILE') return 'the system ran out of open files (ENFILE): raise fs.file-max (sysctl) or close other programs';
  const limit = openFilesLimit();
  return `too many open files (EMFILE): this process may have ${limit ?? 'a limited number of'} open at once; raise it with LimitNOFILE= in the systemd unit (e.g. LimitNOFILE=65536) or ulimit -n`;
}

const LIMIT_AT_LOAD = readOpenFilesLimit();
