import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parseDocument } from 'yaml';
import type { Agent } from '../agent/agent';
import { ConfigError, formatProblem, loadAgentConfig } from '../agent/config';
import { defaultStatusFile, formatStatus, readStatusFile, statusIsStale } from '../agent/status';
import type { Logger } from '../core/log';
import type { DeviceView } from '../hub/devices';
import { HubClient } from '../service/hub-client';
import { DevstreamsError, parseServiceConnectionString } from '../wire';
import { EXIT } from './exit-codes';

/**
 * SIGHUP re-reads the config file. A good config applies to new streams at once; a broken one is
 * logged problem by problem (file:line:col) and the running config stays.
 */
export function reloadOnHangup(file: string, agent: Agent, log: Logger): void {
  process.on('SIGHUP', () => {
    log.info({ file }, 'SIGHUP: reloading the config');
    try {
      agent.reload(loadAgentConfig(file));
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems.map(formatProblem) : [(err as Error).message];
      for (const problem of problems) log.error({ problem }, `config reload: ${problem}`);
      log.error({ file, problems: problems.length }, 'config reload failed: keeping the running config');
    }
  });
}

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

const pct = (v: unknown): string => (typeof v === 'number' ? `${Math.round(v)}%` : '-');

function ago(iso: string | null, now = Date.now()): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : s < 172_800 ? `${Math.round(s / 3600)}h ago` : `${Math.round(s / 86_400)}d ago`;
}

export function formatDevices(devices: DeviceView[]): string {
  const rows = [['DEVICE', 'ONLINE', 'LAST SEEN', 'CPU', 'TEMP', 'MEM', 'DISK /', 'STREAMS', 'VERSION']];
  for (const d of devices) {
    const h = (d.health ?? {}) as {
      cpu?: { load_pct?: number; temp_c?: number | null };
      memory?: { used_pct?: number } | null;
      disks?: Array<{ mount: string; used_pct: number }> | null;
      agent?: { active_streams?: number };
      version?: string;
    };
    const root = h.disks?.find((x) => x.mount === '/') ?? h.disks?.[0];
    rows.push([
      d.deviceId,
      d.connectionState === 'Connected' ? 'yes' : 'no',
      ago(d.lastActivityTime),
      pct(h.cpu?.load_pct),
      typeof h.cpu?.temp_c === 'number' ? `${h.cpu.temp_c}C` : '-',
      pct(h.memory?.used_pct),
      pct(root?.used_pct),
      // The hub's own count is live; the device's last report may be minutes old.
      String(typeof d.activeStreams === 'number' ? d.activeStreams : (h.agent?.active_streams ?? '-')),
      typeof h.version === 'string' ? h.version : '-',
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')}\n`;
}

export function registerOpsCommands(program: Command): void {
  program
    .command('status')
    .description("show the local agent's connection state, open streams and recent refusals (exit 69 when it is not running)")
    .option('-c, --config <file>', 'agent config, to find its status_file')
    .option('--file <file>', 'status file to read (default: status_file, else $RUNTIME_DIRECTORY/status.json, else /run/devstreams/status.json)')
    .option('--json', 'print the raw status JSON')
    .action((opts: { config?: string; file?: string; json?: boolean }) => {
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
    });

  program
    .command('devices')
    .description('list the hub\'s devices: online, last seen, health (uses DEVSTREAMS_CONNECTION_STRING)')
    .option('--ca <file>', "CA that signs the hub's certificate (the hub's DIR/ca.pem); system CAs otherwise")
    .option('--json', 'print the raw JSON')
    .action(async (opts: { ca?: string; json?: boolean }) => {
      const cs = process.env.DEVSTREAMS_CONNECTION_STRING;
      if (!cs) throw new DevstreamsError('EUSAGE', 'set DEVSTREAMS_CONNECTION_STRING to the service connection string (devstreams hub service-string --data-dir DIR prints it)');
      let caPem: Buffer | undefined;
      if (opts.ca) {
        try {
          caPem = readFileSync(opts.ca);
        } catch (err) {
          throw new DevstreamsError('ECONFIG', `cannot read CA file ${opts.ca}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
      }
      const client = new HubClient({ service: parseServiceConnectionString(cs), ...(caPem && opts.ca ? { caPem, caFile: opts.ca } : {}) });
      try {
        const devices = await client.listDevices();
        process.stdout.write(opts.json ? `${JSON.stringify(devices, null, 2)}\n` : formatDevices(devices));
      } finally {
        client.close();
      }
    });
}
