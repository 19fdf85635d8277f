import type { AddressInfo } from 'node:net';
import { startEcho } from './clients';

/**
 * `node dist/bench.cjs targets`: the device's echo service in a process of its own, so the
 * clients that time round trips do not share its event loop. Prints `echo <port>`; runs until
 * killed.
 */
export async function runTargetsProcess(): Promise<void> {
  const echo = await startEcho();
  process.stdout.write(`echo ${(echo.address() as AddressInfo).port}\n`);
  await new Promise<never>(() => undefined);
}
