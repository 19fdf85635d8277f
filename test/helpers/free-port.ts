import { createServer, type AddressInfo } from 'node:net';

/**
 * A free loopback port for programs that cannot listen on port 0 and report back (sshd, iperf3).
 * The kernel picks it; the tiny window between release and reuse is the price of such programs.
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
