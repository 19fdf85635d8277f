import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port';
import { until } from './stack';

/**
 * A real HTTP CONNECT proxy (Debian's tinyproxy) on loopback that lets through only CONNECT to the
 * ports it is given, with basic auth, logging every request so the tests can see what went through it.
 */
export interface Tinyproxy {
  url: string;
  port: number;
  log: () => string;
  connectsTo: (port: number) => number;
  stop: () => Promise<void>;
}

export async function startTinyproxy(allowPorts: number[], auth = { user: 'dev', pass: 's3cret-pass' }): Promise<Tinyproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-proxy-'));
  const port = await freePort();
  const logFile = join(dir, 'tinyproxy.log');
  writeFileSync(
    join(dir, 'tinyproxy.conf'),
    [
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 60',
      `LogFile "${logFile}"`,
      'LogLevel Info',
      'MaxClients 50',
      'Allow 127.0.0.1',
      ...allowPorts.map((p) => `ConnectPort ${p}`),
      `BasicAuth ${auth.user} ${auth.pass}`,
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('tinyproxy', ['-d', '-c', join(dir, 'tinyproxy.conf')], { stdio: 'ignore' });
  const log = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  await until(() => log().includes('Accepting connections'), 'tinyproxy to listen');
  return {
    url: `http://${auth.user}:${auth.pass}@127.0.0.1:${port}`,
    port,
    log,
    connectsTo: (p) => log().split('\n').filter((l) => l.includes(`CONNECT 127.0.0.1:${p} `)).length,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

