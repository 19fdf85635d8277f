import type { Command } from 'commander';
import { EXIT_TABLE } from './exit-codes';

/** Every command below `cmd`, depth first, with its full name (`hub add-device`). */
export function allCommands(cmd: Command, prefix = ''): Array<{ name: string; command: Command }> {
  const out: Array<{ name: string; command: Command }> = [];
  for (const sub of cmd.commands) {
    const name = `${prefix}${sub.name()}`;
    out.push({ name, command: sub }, ...allCommands(sub, `${name} `));
  }
  return out;
}

/**
 * The top-level --help names every subcommand, nested ones included (`hub add-device` was hidden
 * behind `hub`), and ends with the exit-code table; every command throws instead of exiting so
 * that one table decides the code (commander's own exit for a missing option was 1).
 */
export function finishProgram(program: Command): Command {
  const nested = allCommands(program).filter((c) => c.name.includes(' '));
  const width = Math.max(...nested.map((c) => c.name.length));
  const lines = nested.map((c) => `  ${c.name.padEnd(width)}  ${c.command.description().split(';')[0]}`);
  program.addHelpText('after', `\nSubcommands of subcommands:\n${lines.join('\n')}\n\n${EXIT_TABLE}`);
  program.exitOverride();
  for (const { command } of allCommands(program)) command.exitOverride();
  return program;
}
