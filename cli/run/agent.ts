import { Agent } from '../../agent/agent';
import { ConfigError, loadAgentConfig } from '../../agent/config';
import { leaveOutTurbofan } from '../../agent/v8-tiering';
import { formatFileProblem } from '../../core/file-problem';
import { createLogger, type Logger } from '../../core/log';
import { unsupportedRuntime } from '../version';
import { runUntilSignalled } from './until-signalled';

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
      const problems = err instanceof ConfigError ? err.problems.map(formatFileProblem) : [(err as Error).message];
      for (const problem of problems) log.error({ problem }, `config reload: ${problem}`);
      log.error({ file, problems: problems.length }, 'config reload failed: keeping the running config');
    }
  });
}

/** `devstreams agent -c FILE`: runs until SIGTERM/SIGINT; SIGHUP reloads the config. */
export async function runAgent(opts: { config: string }): Promise<void> {
  const turbofanLeftOut = leaveOutTurbofan();
  const config = loadAgentConfig(opts.config);
  const log = createLogger('agent', { level: process.env.DEVSTREAMS_LOG_LEVEL ?? config.log.level });
  const unsupported = unsupportedRuntime();
  if (unsupported) log.warn(unsupported.fields, unsupported.message);
  log.debug({ turbofan: !turbofanLeftOut, node: process.version }, 'V8 optimizing compilers');
  const agent = new Agent(config, log);
  runUntilSignalled(agent, log);
  reloadOnHangup(opts.config, agent, log);
  await agent.start();
}

/** `devstreams check-config FILE`. */
export function checkConfig(file: string): void {
  const config = loadAgentConfig(file);
  process.stdout.write(`${file}: ok (${Object.keys(config.services).length} services)\n`);
}
