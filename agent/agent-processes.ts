import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { defaultStatusFile } from './status';

/** The `status_file` a config names, without validating the rest; undefined when it names none. Throws when unreadable. */
export function statusFileOfConfig(file: string): string | undefined {
  const value = (parseDocument(readFileSync(file, 'utf8')).toJS() as { status_file?: unknown } | null)?.status_file;
  return typeof value === 'string' ? value : undefined;
}

/** `--config FILE`, `--config=FILE`, `-c FILE` from an agent's command line. */
function configArg(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--config' || a === '-c') return args[i + 1];
    if (a.startsWith('--config=')) return a.slice('--config='.length);
  }
  return undefined;
}

/** The status file agent `pid` writes; undefined when this user cannot tell (its config or environment unreadable). */
function statusFileOfProcess(pid: number, args: string[]): string | undefined {
  try {
    const config = configArg(args);
    if (!config) return undefined;
    const cwd = readlinkSync(`/proc/${pid}/cwd`);
    const named = statusFileOfConfig(resolve(cwd, config));
    if (named) return resolve(cwd, named);
    const env = Object.fromEntries(
      readFileSync(`/proc/${pid}/environ`, 'utf8')
        .split('\0')
        .filter((kv) => kv.includes('='))
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
    return defaultStatusFile(env);
  } catch {
    return undefined;
  }
}

/**
 * Pids of devstreams agents running on this machine (Linux /proc) that write `statusFile`, or whose
 * config this user cannot read (they might): what `devstreams status` can still say when the file is
 * missing or old. An agent is a process running the devstreams bundle or single executable with the
 * `agent` subcommand. Empty where there is no /proc.
 */
export function runningAgentPids(statusFile: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const wanted = resolve(statusFile);
  const pids: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const program = argv.findIndex((a) => /^devstreams(\.cjs|\.js)?$/.test(basename(a)));
    if (program < 0 || argv[program + 1] !== 'agent') continue;
    const writes = statusFileOfProcess(Number(entry), argv.slice(program + 2));
    if (writes === undefined || resolve(writes) === wanted) pids.push(Number(entry));
  }
  return pids;
}
