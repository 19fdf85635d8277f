import { fstatSync, writeSync } from 'node:fs';

/**
 * journald reads a service's stderr line by line and takes a leading `<N>` (syslog priority) as the
 * line's level, stripping it (SyslogLevelPrefix=, on by default). With it `journalctl -p warning`
 * shows warnings and errors, and the stored message is still the plain JSON line.
 */
const PINO_TO_SYSLOG: Array<[minLevel: number, priority: number]> = [
  [60, 2], // fatal → crit
  [50, 3], // error → err
  [40, 4], // warn → warning
  [30, 6], // info → info
  [0, 7], // debug, trace → debug
];

export function syslogPriority(pinoLevel: number): number {
  return PINO_TO_SYSLOG.find(([min]) => pinoLevel >= min)![1];
}

/**
 * True when stderr is the journal: systemd sets JOURNAL_STREAM to `device:inode` of the stream it
 * connected, and we check that it is still our fd 2 (a child whose stderr was redirected is not).
 */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const stream = env.JOURNAL_STREAM;
  if (!stream) return false;
  try {
    const st = fstatSync(2);
    return stream === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

/** A pino destination that writes each JSON line to fd 2 with its `<N>` priority in front. */
export function journaldDestination(fd = 2): { write(line: string): void } {
  return {
    write(line: string): void {
      const m = /"level":(\d+)/.exec(line);
      writeSync(fd, `<${syslogPriority(m ? Number(m[1]) : 30)}>${line}`);
    },
  };
}
