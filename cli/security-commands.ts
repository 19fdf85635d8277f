import type { Command } from 'commander';

const FORCE_HELP = 'write even over a registry file that does not parse (it is set aside as FILE.broken-TIME first; its entries are lost)';

/**
 * The hub's credentials and registry, declared here and run by ./run/hub-devices and
 * ./run/hub-operators: `rotate-key`, device lifecycle (`remove-device`, `disable-device`,
 * `enable-device`) and operators (`add-operator`, `remove-operator`, `rotate-operator`,
 * `operators`). All take effect on a running hub at once: it follows its files.
 */
export function registerSecurityCommands(hub: Command): void {
  hub
    .command('rotate-key <id>')
    .description("replace one of a device's two keys (the other keeps working) and print the connection string with the new key (last line)")
    .requiredOption('--data-dir <dir>', 'the hub data directory')
    .requiredOption('--key <which>', 'primary or secondary')
    .option('--force', FORCE_HELP)
    .action(async (id: string, opts: { dataDir: string; key: string; force?: boolean }) => (await import('./run/hub-devices')).rotateKey(id, opts));

  for (const [name, verb, description] of [
    ['remove-device', 'remove', 'remove a device: a running hub refuses it from now on and ends its sessions'],
    ['disable-device', 'disable', 'disable a device (kept with its keys): refused at connect, no streams, sessions ended'],
    ['enable-device', 'enable', 'enable a disabled device again'],
  ] as const) {
    hub
      .command(`${name} <id>`)
      .description(description)
      .requiredOption('--data-dir <dir>', 'the hub data directory')
      .option('--force', FORCE_HELP)
      .action(async (id: string, opts: { dataDir: string; force?: boolean }) => (await import('./run/hub-devices')).changeDevice(verb, id, opts));
  }

  hub
    .command('add-operator <name>')
    .description('add an operator (a person or script on the service side) with its own key; prints its service connection string once (last line)')
    .requiredOption('--data-dir <dir>', 'the hub data directory')
    .option('--devices <patterns>', "only these devices: comma-separated ids, * and ? as wildcards ('pi-*,lab-?')")
    .option('--services <names>', 'only these services: comma-separated names (ssh,web)')
    .option('--force', FORCE_HELP)
    .action(async (name: string, opts: { dataDir: string; devices?: string; services?: string; force?: boolean }) => (await import('./run/hub-operators')).addOperator(name, opts));
  hub
    .command('remove-operator <name>')
    .description('remove an operator: a running hub refuses its next request (streams it opened may finish)')
    .requiredOption('--data-dir <dir>', 'the hub data directory')
    .option('--force', FORCE_HELP)
    .action(async (name: string, opts: { dataDir: string; force?: boolean }) => (await import('./run/hub-operators')).removeOperator(name, opts));
  hub
    .command('rotate-operator <name>')
    .description("replace an operator's key (the old one is refused from now on) and print its new service connection string (last line)")
    .requiredOption('--data-dir <dir>', 'the hub data directory')
    .option('--force', FORCE_HELP)
    .action(async (name: string, opts: { dataDir: string; force?: boolean }) => (await import('./run/hub-operators')).rotateOperator(name, opts));
  hub
    .command('operators')
    .description('list the operators and their limits (never their keys)')
    .requiredOption('--data-dir <dir>', 'the hub data directory')
    .action(async (opts: { dataDir: string }) => (await import('./run/hub-operators')).listOperators(opts));
}
