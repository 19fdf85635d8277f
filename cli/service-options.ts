import type { Command } from 'commander';

export const CONNECTION_STRING_HELP =
  'The hub and the service credentials come from DEVSTREAMS_CONNECTION_STRING (devstreams hub service-string --data-dir DIR prints it).';

/** Adds --ca and --proxy to a service-side subcommand, and names DEVSTREAMS_CONNECTION_STRING in its --help. */
export function addServiceOptions(command: Command): Command {
  return command
    .option('--ca <file>', "CA that signs the hub's certificate (the hub's DIR/ca.pem); system CAs otherwise")
    .option('--proxy <url>', 'HTTP CONNECT proxy http://[user:password@]host:port, or none; HTTPS_PROXY/NO_PROXY otherwise')
    .addHelpText('after', `\n${CONNECTION_STRING_HELP}\n`);
}
