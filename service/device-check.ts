import type { Logger } from '../core/log';
import { DevstreamsError, isDevstreamsError } from '../wire';
import type { HubClient } from './hub-client';

/**
 * Before `connect` listens for a device: is it registered? A port that accepts connections for a
 * device that does not exist only fails later, one connection at a time, with the reason in a log
 * nobody reads. Refused credentials fail here too. A hub that cannot be reached now, or that cannot
 * list devices (IoT Hub answers our GET /devices differently), is only a warning: the port still
 * listens and each connection tries again.
 */
/** How long `connect` waits for the device list before it listens anyway (a hub that does not answer). */
export const DEVICE_CHECK_TIMEOUT_MS = 5_000;

export async function requireKnownDevice(client: HubClient, deviceId: string, log: Logger): Promise<void> {
  let known: boolean;
  try {
    known = (await client.listDevices(DEVICE_CHECK_TIMEOUT_MS)).some((d) => d.deviceId === deviceId);
  } catch (err) {
    if (isDevstreamsError(err) && ['EUNAUTHORIZED', 'ECLOCK_SKEW', 'ECERT_UNTRUSTED'].includes(err.code)) throw err;
    log.warn({ device: deviceId, err: (err as Error).message }, `cannot check that device "${deviceId}" exists: ${(err as Error).message}`);
    return;
  }
  if (!known) throw new DevstreamsError('EUNKNOWN_DEVICE', `unknown device "${deviceId}": the hub has no such device (devstreams devices lists them)`);
}
