import type { Command } from 'commander';

/** `hub rotate-key ID --key primary|secondary` (declared here, run by ./run/hub-devices). */
export function registerSecurityCommands(hub: Command): void {
  hub
    .command('rotate-key <id>')
    .description("replace one of a device's two keys (the other keeps working) and print the connection string with the new key (last line)")
    .requiredOption('--data-dir <dir>', 'the hub data directory')
    .requiredOption('--key <which>', 'primary or secondary')
    .action(async (id: string, opts: { dataDir: string; key: string }) => (await import('./run/hub-devices')).rotateKey(id, opts));
}
