import { createLogger } from '../../core/log';
import { runShell } from '../../service/shell';
import { serviceClient, type ServiceCliOptions } from './service-client';

/** `devstreams shell DEVICE [SERVICE]`: exits with the remote shell's status. */
export async function runShellCommand(device: string, service: string | undefined, opts: ServiceCliOptions): Promise<void> {
  // Logs would garble a raw terminal: only warnings, and only when asked for more.
  const log = createLogger('shell', { level: process.env.DEVSTREAMS_LOG_LEVEL ?? 'warn' });
  const client = serviceClient(opts);
  try {
    process.exitCode = await runShell({
      client,
      deviceId: device,
      service: service ?? 'shell',
      stdin: process.stdin,
      stdout: process.stdout,
      stderr: process.stderr,
      sizeFrom: [process.stdout, process.stderr],
      log,
    });
  } finally {
    client.close();
    process.stdin.destroy();
  }
}
