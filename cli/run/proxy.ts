import { createLogger } from '../../core/log';
import { runStdioProxy } from '../../service/stdio-proxy';
import { serviceClient, type ServiceCliOptions } from './service-client';

/** `devstreams proxy DEVICE [SERVICE]`: one stream on stdin/stdout (ssh's ProxyCommand). */
export async function runProxy(device: string, service: string | undefined, opts: ServiceCliOptions): Promise<void> {
  // stderr is what ssh shows the person: our failures as one line, no logs unless asked for.
  const log = createLogger('proxy', { level: process.env.DEVSTREAMS_LOG_LEVEL ?? 'warn' });
  const client = serviceClient(opts);
  try {
    await runStdioProxy({ client, deviceId: device, service: service ?? 'ssh', stdin: process.stdin, stdout: process.stdout, log });
  } finally {
    client.close();
    process.stdin.destroy();
  }
}
