import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { defaultStatusFile, formatStatus, readStatusFile, statusIsStale } from '../../agent/status';
import { DevstreamsError } from '../../wire';
import { EXIT } from '../exit-codes';

/** The status file named by a config, without validating the rest (the caller may not read its secrets). */
function statusFileFromConfig(file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new DevstreamsError('EUSAGE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const value = (parseDocument(text).toJS() as { status_file?: unknown } | null)?.status_file;
  return typeof value === 'string' ? value : undefined;
}

/** `devstreams status`: the local agent's status file; exit 69 when it is missing or stale. */
export function showStatus(opts: { config?: string; file?: string; json?: boolean }): void {
  const file = opts.file ?? (opts.config ? statusFileFromConfig(opts.config) : undefined) ?? defaultStatusFile();
  let status;
  try {
    status = readStatusFile(file);
  } catch (err) {
    process.stderr.write(`devstreams: no agent status in ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): is the agent running?\n`);
    process.exitCode = EXIT.UNAVAILABLE;
    return;
  }
  process.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
  if (statusIsStale(status)) process.exitCode = EXIT.UNAVAILABLE;
}
