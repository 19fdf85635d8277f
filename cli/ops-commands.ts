import type { Command } from 'commander';
import { addServiceOptions } from './service-options';
import type { ServiceCliOptions } from './run/service-client';

/** `status` and `devices` (declared here, run by ./run/status and ./run/devices). */
export function registerOpsCommands(program: Command): void {
  program
    .command('status')
    .description("show the local agent's connection state, open streams and recent refusals (exit 69 when it is not running or not connected)")
    .option('-c, --config <file>', 'agent config, to find its status_file')
    .option('--file <file>', 'status file to read (default: status_file, else $RUNTIME_DIRECTORY/status.json, else /run/devstreams/status.json)')
    .option('--json', 'print the raw status JSON')
    .action(async (opts: { config?: string; file?: string; json?: boolean }) => (await import('./run/status')).showStatus(opts));

  addServiceOptions(program.command('devices').description("list the hub's devices: online, last seen, health"))
    .option('--json', 'print the raw JSON')
    .action(async (opts: ServiceCliOptions & { json?: boolean }) => (await import('./run/devices')).listDevices(opts));
}
