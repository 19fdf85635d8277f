import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addDevice, serviceConnectionString, startAgentProcess, startConnectProcess, startHubProcess, tcpServicesYaml, type CliProcess } from './cli';
import { startEchoServer } from './targets';

/**
 * Hub, agent and `connect` as real processes around one echo target, each with the options a test
 * gives (`--drain 1s`, `ping_interval: 500ms`): for tests that signal, freeze or kill one of them.
 */
export interface ProcessWorld {
  dir: string;
  dataDir: string;
  hub: CliProcess & { port: number };
  agent: CliProcess;
  connect: CliProcess;
  connectPort: number;
  echo: Awaited<ReturnType<typeof startEchoServer>>;
  serviceString: string;
  stop(): Promise<void>;
}

export async function startProcessWorld(
  opts: { hubArgs?: string[]; agentYaml?: string; connectArgs?: string[]; device?: string; services?: Record<string, number>; connectService?: string } = {},
): Promise<ProcessWorld> {
  const device = opts.device ?? 'pi-world';
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-world-'));
  const dataDir = join(dir, 'hub');
  const procs: CliProcess[] = [];
  const echo = await startEchoServer();
  const stop = async (): Promise<void> => {
    for (const p of procs.reverse()) {
      if (p.proc.signalCode === null && p.proc.exitCode === null) p.proc.kill('SIGCONT'); // a frozen one must be able to die
      await p.stop('SIGKILL');
    }
    await echo.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const hub = await startHubProcess(dataDir, 0, { args: opts.hubArgs ?? [] });
    procs.push(hub);
    const deviceString = await addDevice(dataDir, device);
    const serviceString = await serviceConnectionString(dataDir);
    const servicesYaml = tcpServicesYaml({ echo: echo.port, ...opts.services });
    const agent = startAgentProcess({ config: join(dir, 'agent.yaml'), dataDir, deviceString, servicesYaml, ...(opts.agentYaml ? { extraYaml: opts.agentYaml } : {}) });
    procs.push(agent);
    await agent.waitForLine(/listening for stream requests/);
    const connect = await startConnectProcess({ dataDir, serviceString, device, service: opts.connectService ?? 'echo', args: opts.connectArgs ?? [] });
    procs.push(connect);
    return { dir, dataDir, hub, agent, connect, connectPort: connect.port, echo, serviceString, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** How a client connection ended: a FIN after everything, or a reset (ECONNRESET), with the bytes it got. */
export interface HeldConnection {
  socket: Socket;
  received: () => number;
  data: () => Buffer;
  ended: Promise<{ how: 'fin' | 'reset' | 'error'; code?: string; bytes: number }>;
}

/**
 * Opens a connection through `connect` to the echo target and proves the stream is up: `first` bytes
 * go out and come back. The connection then stays open (no FIN) until the test ends it.
 */
export async function openEchoConnection(port: number, first: Buffer): Promise<HeldConnection> {
  const socket = netConnect({ host: '127.0.0.1', port, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  let bytes = 0;
  let sawEnd = false;
  const ended = new Promise<{ how: 'fin' | 'reset' | 'error'; code?: string; bytes: number }>((resolve) => {
    socket.on('end', () => {
      sawEnd = true;
      resolve({ how: 'fin', bytes });
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve({ how: err.code === 'ECONNRESET' ? 'reset' : 'error', code: err.code ?? '', bytes }));
    socket.on('close', () => resolve({ how: sawEnd ? 'fin' : 'error', code: 'closed', bytes }));
  });
  const echoed = new Promise<void>((resolve, reject) => {
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      bytes += c.length;
      if (bytes >= first.length) resolve();
    });
    void ended.then((e) => reject(new Error(`connection ended (${e.how} ${e.code ?? ''}) before the echo of the first ${first.length} bytes`)));
  });
  socket.write(first);
  await echoed;
  return { socket, received: () => bytes, data: () => Buffer.concat(chunks), ended };
}
