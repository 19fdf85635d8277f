import { parseHostPort } from '../../core/address';
import { createLogger } from '../../core/log';
import { Hub } from '../../hub/hub';
import { DevstreamsError } from '../../wire';
import { fleetHubOptions, type FleetCliOptions } from '../fleet-options';
import { durationOption, runUntilSignalled } from './until-signalled';

export interface HubCliOptions extends FleetCliOptions {
  dataDir?: string;
  listen: string;
  publicHost?: string;
  san?: string[];
  mqttListen?: string;
  devicePagesListen?: string;
  deviceStreamRate?: string;
  serviceStreamRate?: string;
  unauthenticatedMax?: string;
  drain: string;
  pingInterval: string;
  metricsListen?: string;
}

/** `RATE/BURST` (`200/1000`): a steady rate per second and a burst, for the hub's stream request limits. */
function parseRate(text: string, flag: string): { perSecond: number; burst: number } {
  const m = /^(\d+(?:\.\d+)?)\/(\d+)$/.exec(text.trim());
  const perSecond = Number(m?.[1]);
  const burst = Number(m?.[2]);
  if (!m || !(perSecond > 0) || burst < 1) throw new DevstreamsError('EUSAGE', `${flag} wants RATE/BURST such as 200/1000 (requests per second / at once), not "${text}"`);
  return { perSecond, burst };
}

/** `TOTAL/PER_ADDRESS` (`1024/256`): the caps on connections that have not authenticated yet. */
function parseAdmission(text: string): { total: number; perAddress: number } {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const total = Number(m?.[1]);
  const perAddress = Number(m?.[2]);
  if (!m || total < 1 || perAddress < 1 || perAddress > total) {
    throw new DevstreamsError('EUSAGE', `--unauthenticated-max wants TOTAL/PER_ADDRESS such as 1024/256 (per address at most the total), not "${text}"`);
  }
  return { total, perAddress };
}

/** `devstreams hub`: runs until SIGTERM/SIGINT. */
export async function runHub(opts: HubCliOptions): Promise<void> {
  if (!opts.dataDir) throw new DevstreamsError('EUSAGE', 'hub needs --data-dir DIR (where it keeps its CA, keys and device registry)');
  const log = createLogger('hub');
  const part = new Hub({
    dataDir: opts.dataDir,
    listen: parseHostPort(opts.listen, '0.0.0.0'),
    ...(opts.publicHost ? { publicHost: opts.publicHost } : {}),
    ...(opts.san ? { altNames: opts.san } : {}),
    ...(opts.mqttListen ? { mqttListen: parseHostPort(opts.mqttListen, '0.0.0.0') } : {}),
    ...(opts.devicePagesListen ? { devicePagesListen: parseHostPort(opts.devicePagesListen, '0.0.0.0') } : {}),
    ...(opts.deviceStreamRate || opts.serviceStreamRate
      ? {
          rateLimits: {
            ...(opts.deviceStreamRate ? { device: parseRate(opts.deviceStreamRate, '--device-stream-rate') } : {}),
            ...(opts.serviceStreamRate ? { service: parseRate(opts.serviceStreamRate, '--service-stream-rate') } : {}),
          },
        }
      : {}),
    ...(opts.unauthenticatedMax ? { admission: parseAdmission(opts.unauthenticatedMax) } : {}),
    ...fleetHubOptions(opts),
    drainMs: durationOption(opts.drain, '--drain'),
    ...(opts.metricsListen ? { metricsListen: opts.metricsListen } : {}),
    pingIntervalMs: durationOption(opts.pingInterval, '--ping-interval', 100),
    log,
  });
  runUntilSignalled(part, log);
  await part.start();
  process.stdout.write(`hub listening on ${part.host} (CA: ${opts.dataDir}/ca.pem)\n`);
  if (part.devicePagesPort) process.stdout.write(`device pages on port ${part.devicePagesPort}\n`);
}
