import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { resolve } from 'node:path';
import { parseServiceConnectionString } from '../../wire';
import { readCa, serviceConnectionString, type ServiceCliOptions } from './service-client';

/** How ssh should start this very program: the bundle under node, or a single executable alone. */
function selfCommand(): string[] {
  const script = process.argv[1];
  return script && resolve(script) !== process.execPath ? [process.execPath, resolve(script)] : [process.execPath];
}

/** Single quotes for the shell ssh runs ProxyCommand with. */
function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The ProxyCommand that reaches `%h`'s service through devstreams, with the same --ca/--proxy. */
export function proxyCommandFor(opts: ServiceCliOptions & { service: string }): string {
  const words = [...selfCommand(), 'proxy', ...(opts.ca ? ['--ca', resolve(opts.ca)] : []), ...(opts.proxy ? ['--proxy', opts.proxy] : []), '%h', opts.service];
  return words.map(shellQuote).join(' ');
}

/** `devstreams ssh [USER@]DEVICE [ssh args]`: ssh with devstreams as its ProxyCommand; exits with ssh's status. */
export async function runSsh(destination: string, sshArgs: string[], opts: ServiceCliOptions & { service: string }): Promise<void> {
  // What the ProxyCommand would fail on, said once here rather than by ssh's child.
  parseServiceConnectionString(serviceConnectionString());
  readCa(opts.ca);
  // Ctrl-C belongs to ssh (and the remote side): ours would only orphan it.
  const ignore = (): void => undefined;
  process.on('SIGINT', ignore);
  const child = spawn('ssh', ['-o', `ProxyCommand=${proxyCommandFor(opts)}`, destination, ...sshArgs], { stdio: 'inherit' });
  const code = await new Promise<number>((done) => {
    child.on('error', (err) => {
      process.stderr.write(`devstreams: cannot run ssh: ${(err as NodeJS.ErrnoException).code ?? err.message}\n`);
      done(127);
    });
    child.on('exit', (c, signal) => done(c ?? 128 + (signal ? constants.signals[signal] : 0)));
  });
  process.off('SIGINT', ignore);
  process.exitCode = code;
}
