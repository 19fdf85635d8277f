import { runningAgentPids, statusFileOfConfig } from '../../agent/agent-processes';
import { defaultStatusFile, formatStatus, readStatusFile, statusIsStale } from '../../agent/status';
import { DevstreamsError } from '../../wire';
import { EXIT } from '../exit-codes';

/** The status file named by a config, without validating the rest (the caller may not read its secrets). */
function statusFileFromConfig(file: string): string | undefined {
  try {
    return statusFileOfConfig(file);
  } catch (err) {
    throw new DevstreamsError('EUSAGE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * `devstreams status`: the local agent's status file; exit 69 when it is missing or stale. Then it
 * says what it can still tell: whether an agent process is running at all.
 */
export function showStatus(opts: { config?: string; file?: string; json?: boolean }): void {
  const file = opts.file ?? (opts.config ? statusFileFromConfig(opts.config) : undefined) ?? defaultStatusFile();
  let status;
  try {
    status = readStatusFile(file);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    const agents = runningAgentPids(file);
    process.stderr.write(
      agents.length > 0
        ? `devstreams: no agent status in ${file} (${why}), but an agent is running as pid ${agents.join(', ')}: it cannot write the file (see its log, e.g. journalctl -u devstreams-agent) or uses another status_file\n`
        : `devstreams: no agent status in ${file} (${why}) and no agent process is running\n`,
    );
    process.exitCode = EXIT.UNAVAILABLE;
    return;
  }
  const stale = statusIsStale(status);
  process.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status, Date.now(), stale ? runningAgentPids(file) : []));
  // Not connected (or not running) is not "fine" for a script or a health check.
  if (stale || status.connection.state !== 'connected') process.exitCode = EXIT.UNAVAILABLE;
}
