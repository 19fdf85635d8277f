import { formatHostPort, parseHostPort } from '../../core/address';
import { createLogger } from '../../core/log';
import { Connect } from '../../service/connect';
import { requireKnownDevice } from '../../service/device-check';
import { serviceClient, type ServiceCliOptions } from './service-client';
import { durationOption, runUntilSignalled } from './until-signalled';

/** `devstreams connect DEVICE SERVICE -l PORT`: runs until SIGTERM/SIGINT. */
export async function runConnect(device: string, service: string, opts: ServiceCliOptions & { listen: string; pingInterval: string; setupTimeout: string }): Promise<void> {
  const log = createLogger('connect');
  const pingIntervalMs = durationOption(opts.pingInterval, '--ping-interval', 100);
  const setupTimeoutMs = durationOption(opts.setupTimeout, '--setup-timeout', 100);
  const client = serviceClient(opts);
  try {
    await requireKnownDevice(client, device, log);
  } catch (err) {
    client.close();
    throw err;
  }
  const part = new Connect({ client, deviceId: device, service, listen: parseHostPort(opts.listen, '127.0.0.1'), pingIntervalMs, setupTimeoutMs, log });
  runUntilSignalled(part, log);
  await part.start();
  const { host, port } = part.address;
  process.stdout.write(`listening on ${formatHostPort(host, port)}, forwarding to ${device}/${service}\n`);
}
