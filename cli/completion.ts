import type { Command } from 'commander';
import { allCommands } from './help';

/** The long and short option names of a command (`--ca`, `-t`), plus --help. */
function optionWords(cmd: Command): string[] {
  return [...cmd.options.flatMap((o) => [o.long, o.short].filter((f): f is string => Boolean(f))), '--help'];
}

/**
 * A bash completion script written from the command tree itself, so it never falls behind the
 * CLI: subcommands, hub's subcommands, each command's options; file names otherwise (`-o default`).
 * No library: commander has no completion, and the few lines below are all bash needs.
 */
export function bashCompletion(program: Command): string {
  const top = program.commands.map((c) => c.name());
  const hub = program.commands.find((c) => c.name() === 'hub');
  const cases = allCommands(program).map(({ name, command }) => `    '${name}') words='${optionWords(command).join(' ')}' ;;`);
  return `# bash completion for devstreams: devstreams completion > /etc/bash_completion.d/devstreams
_devstreams() {
  local cur=\${COMP_WORDS[COMP_CWORD]} words='' path=\${COMP_WORDS[1]}
  if [[ $COMP_CWORD -ge 3 && \${COMP_WORDS[1]} == hub && \${COMP_WORDS[2]} != -* ]]; then path="hub \${COMP_WORDS[2]}"; fi
  if [[ $COMP_CWORD -eq 1 ]]; then
    words='${[...top, '--help', '--version'].join(' ')}'
  elif [[ $COMP_CWORD -eq 2 && \${COMP_WORDS[1]} == hub && $cur != -* ]]; then
    words='${(hub?.commands ?? []).map((c) => c.name()).join(' ')}'
  elif [[ $cur == -* ]]; then
    case "$path" in
${cases.join('\n')}
    esac
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _devstreams devstreams
`;
}
