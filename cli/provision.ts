import { Command } from 'commander';

/** `devstreams provision`: what devstreams-firstboot.service runs on a Pi image's first boot. */
export function provisionCommand(): Command {
  return new Command('provision')
    .description('install devstreams.yaml and/or devstreams-connection-string.txt from a boot partition into the config directory, then remove them there')
    .option('--boot-dir <dir...>', 'boot partition mount points, searched in order', ['/boot/firmware', '/boot'])
    .option('--config-dir <dir>', 'the agent config directory', '/etc/devstreams')
    .option('--group <name>', 'the group that may read agent.yaml (the service group)', 'devstreams')
    .action(async (opts: { bootDir: string[]; configDir: string; group: string }) => {
      const { provisionFromBoot } = await import('../agent/provision');
      const result = provisionFromBoot({ bootDirs: opts.bootDir, configDir: opts.configDir, group: opts.group });
      if (!result.bootDir) {
        process.stdout.write(`nothing to provision in ${opts.bootDir.join(', ')}\n`);
        return;
      }
      process.stdout.write(`installed ${result.installed.join(', ')}; removed ${result.removed.join(', ')}\n`);
    });
}
