import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The bundle every test that runs real processes uses (`make build` makes it; `make test` builds first). */
export const BUNDLE = resolve(__dirname, '../../dist/devstreams.cjs');

export function requireBundle(): void {
  if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run "make build" (make test does)`);
}

export interface CliProcess {
  proc: ChildProcess;
  stdout: string[];
  stderr: string[];
  /** Resolves with the first line (stdout or stderr) matching `re`, seen before or after the call. */
  waitForLine: (re: RegExp, timeoutMs?: number) => Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop: (signal?: NodeJS.Signals) => Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs `node dist/devstreams.cjs ...args` (or another build of the CLI) as a real process with JSON logs on stderr. */
export function runCli(args: string[], env: Record<string, string> = {}, cwd?: string, bundle = BUNDLE): CliProcess {
  if (bundle === BUNDLE) requireBundle();
  const proc = spawn(process.execPath, [bundle, ...args], {
    env: { ...process.env, DEVSTREAMS_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(cwd ? { cwd } : {}),
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const watchers: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  const onLine = (into: string[]) => {
    let partial = '';
    return (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        into.push(line);
        if (process.env.TEST_LOG) process.stderr.write(`[${args[0]}] ${line}\n`);
        for (const w of [...watchers]) {
          if (w.re.test(line)) {
            watchers.splice(watchers.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    };
  };
  proc.stdout!.on('data', onLine(stdout));
  proc.stderr!.on('data', onLine(stderr));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  return {
    proc,
    stdout,
    stderr,
    exited,
    waitForLine(re, timeoutMs = 20_000) {
      const seen = [...stdout, ...stderr].find((l) => re.test(l));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolveLine, reject) => {
        const timer = setTimeout(() => reject(new Error(`no line matching ${re} from "devstreams ${args.join(' ')}" within ${timeoutMs} ms; stderr:\n${stderr.slice(-20).join('\n')}`)), timeoutMs);
        watchers.push({
          re,
          resolve: (l) => {
            clearTimeout(timer);
            resolveLine(l);
          },
        });
        exited.then(() => {
          clearTimeout(timer);
          reject(new Error(`"devstreams ${args.join(' ')}" exited before printing ${re}; stderr:\n${stderr.slice(-20).join('\n')}`));
        });
      });
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Runs a CLI command to completion. */
export async function runCliToEnd(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = runCli(args, env);
  const { code } = await p.exited;
  // let the last 'data' events land
  await new Promise((r) => setImmediate(r));
  return { code, stdout: p.stdout.join('\n'), stderr: p.stderr.join('\n') };
}

/** Starts `devstreams hub` on 127.0.0.1:0 (or a given port) and returns it with the port it chose. */
export async function startHubProcess(dataDir: string, port = 0, opts: { args?: string[]; env?: Record<string, string> } = {}): Promise<CliProcess & { port: number }> {
  const hub = runCli(['hub', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, ...(opts.args ?? [])], opts.env);
  const line = await hub.waitForLine(/^hub listening on /).catch(async (err: unknown) => {
    await hub.stop('SIGKILL');
    throw err;
  });
  return Object.assign(hub, { port: Number(/:(\d+) /.exec(line)![1]) });
}

export function lastLine(text: string): string {
  return text.trim().split('\n').pop() ?? '';
}

/** `hub add-device ID` on a hub's data directory: the device's connection string (throws with the CLI's stderr if it fails). */
export async function addDevice(dataDir: string, id: string): Promise<string> {
  const r = await runCliToEnd(['hub', 'add-device', id, '--data-dir', dataDir]);
  if (r.code !== 0) throw new Error(`hub add-device ${id} exited ${r.code}: ${r.stderr}`);
  return lastLine(r.stdout);
}

/** `hub service-string`: the connection string of the hub's `service` operator. */
export async function serviceConnectionString(dataDir: string): Promise<string> {
  return lastLine((await runCliToEnd(['hub', 'service-string', '--data-dir', dataDir])).stdout);
}

/** Agent config lines under `services:` for TCP services, name → port on 127.0.0.1. */
export function tcpServicesYaml(services: Record<string, number>): string {
  return Object.entries(services)
    .map(([name, port]) => `  ${name}:\n    port: ${port}\n`)
    .join('');
}

/**
 * `devstreams agent` as a real process for a device of a test hub: writes `config` with the
 * device's connection string, the hub's CA and `servicesYaml` (the lines under `services:`, then
 * `extraYaml`), and starts it. Wait for it with `waitForLine(/listening for stream requests/)`.
 */
export function startAgentProcess(opts: { config: string; dataDir: string; deviceString: string; servicesYaml: string; extraYaml?: string }): CliProcess {
  writeFileSync(opts.config, `hub:\n  connection_string: "${opts.deviceString}"\n  ca: ${join(opts.dataDir, 'ca.pem')}\nservices:\n${opts.servicesYaml}${opts.extraYaml ?? ''}`);
  return runCli(['agent', '--config', opts.config]);
}

/** `devstreams connect DEVICE SERVICE --listen 0` with a service connection string and the hub's CA: the process and its port. */
export async function startConnectProcess(
  opts: { dataDir: string; serviceString: string; device: string; service: string; args?: string[] },
): Promise<CliProcess & { port: number }> {
  const proc = runCli(['connect', opts.device, opts.service, '--listen', '0', '--ca', join(opts.dataDir, 'ca.pem'), ...(opts.args ?? [])], { DEVSTREAMS_CONNECTION_STRING: opts.serviceString });
  const line = await proc.waitForLine(/^listening on /, 30_000).catch(async (err: unknown) => {
    await proc.stop('SIGKILL');
    throw err;
  });
  return Object.assign(proc, { port: Number(/:(\d+),/.exec(line)![1]) });
}
