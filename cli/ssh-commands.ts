import type { Command } from 'commander';
import type { ServiceCliOptions } from './run/service-client';
import { addServiceOptions } from './service-options';

/** `proxy` and `ssh` (declared here, run by ./run/proxy and ./run/ssh): docs/ssh.md. */
export function registerSshCommands(program: Command): void {
  addServiceOptions(
    program
      .command('proxy <device> [service]')
      .description("one stream to DEVICE's SERVICE (default ssh) on stdin/stdout, for ssh: ssh -o ProxyCommand='devstreams proxy %h' pi@pi-001"),
  ).action(async (device: string, service: string | undefined, opts: ServiceCliOptions) => (await import('./run/proxy')).runProxy(device, service, opts));

  addServiceOptions(
    program
      .command('ssh <destination> [ssh-args...]')
      .description('ssh to [USER@]DEVICE with devstreams proxy as its ProxyCommand; the arguments after DEVICE go to ssh')
      .option('--service <name>', "the device's service for its sshd", 'ssh')
      .allowUnknownOption()
      .passThroughOptions(),
  ).action(async (destination: string, sshArgs: string[], opts: ServiceCliOptions & { service: string }) => (await import('./run/ssh')).runSsh(destination, sshArgs, opts));
}
