import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect as netConnect } from 'node:net';
import { join, resolve } from 'node:path';
import { createCa, issueCertificate } from '../../hub/pki';
import { freePort } from './free-port';

async function acceptsOn(port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((r) => {
      const s = netConnect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The broker side we ship: the tests run these very files (paths and ports rewritten). */
export const SHIPPED_CONFIG_DIR = resolve(__dirname, '../../config/mosquitto');
const SHIPPED_DIR = '/etc/mosquitto/devstreams/';

export interface Mosquitto {
  dir: string;
  /** TLS listener for devices (use_username_as_clientid). */
  devicePort: number;
  /** Plain listener for hubs, on loopback. */
  hubPort: number;
  /** CA that signed the broker's server certificate. */
  caFile: string;
  caPem: Buffer;
  proc: ChildProcess;
  log: string[];
  /** Adds (or changes) a user in the password file; call reload() for a running broker to see it. */
  addUser: (name: string, password: string) => void;
  /** SIGKILL (a crash: no wills, no goodbyes) and start again on the same ports and files. */
  restart: () => Promise<void>;
  /** SIGHUP: mosquitto rereads the password file and the ACL. */
  reload: () => void;
  stop: () => Promise<void>;
}

/**
 * Runs Debian's mosquitto (never the system service) with config/mosquitto/mosquitto.conf and acl,
 * rewritten to a temp dir, free loopback ports and no persistence. Users are added before start.
 */
export async function startMosquitto(users: Record<string, string>, opts: { extraConf?: string | ((dir: string) => string); quiet?: boolean; passwordFile?: (file: string) => void; configDir?: string } = {}): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-mosquitto-'));
  const [devicePort, hubPort] = [await freePort(), await freePort()];
  const ca = createCa('devstreams test broker CA');
  const server = issueCertificate(ca, { commonName: '127.0.0.1', altNames: ['127.0.0.1', 'localhost'], usage: 'server' });
  writeFileSync(join(dir, 'server.pem'), server.certPem);
  writeFileSync(join(dir, 'server-key.pem'), server.keyPem, { mode: 0o600 });
  const caFile = join(dir, 'broker-ca.pem');
  writeFileSync(caFile, ca.certPem);
  writeFileSync(join(dir, 'acl'), readFileSync(join(opts.configDir ?? SHIPPED_CONFIG_DIR, 'acl')));
  writeFileSync(join(dir, 'passwd'), '', { mode: 0o600 });
  const passwd = join(dir, 'passwd');
  const addUser = (name: string, password: string): void => {
    execFileSync('mosquitto_passwd', ['-b', passwd, name, password], { stdio: 'ignore' });
  };
  for (const [name, password] of Object.entries(users)) addUser(name, password);
  opts.passwordFile?.(passwd);

  let conf = readFileSync(join(opts.configDir ?? SHIPPED_CONFIG_DIR, 'mosquitto.conf'), 'utf8').split(SHIPPED_DIR).join(`${dir}/`);
  const replace = (from: RegExp, to: string): void => {
    if (!from.test(conf)) throw new Error(`shipped mosquitto.conf has no line matching ${from}`);
    conf = conf.replace(from, to);
  };
  replace(/^persistence true$/m, 'persistence false');
  replace(/^persistence_location .*$/m, '');
  replace(/^listener 8883$/m, `listener ${devicePort} 127.0.0.1`);
  replace(/^listener 1884 127\.0\.0\.1$/m, `listener ${hubPort} 127.0.0.1`);
  // As root, mosquitto would drop to the mosquitto user, who cannot read our 0600 temp files.
  const asRoot = process.getuid?.() === 0 ? 'user root\n' : '';
  const logTypes = opts.quiet ? ['error', 'warning'] : ['error', 'warning', 'notice', 'information'];
  conf = `${asRoot}log_dest stderr\n${logTypes.map((t) => `log_type ${t}\n`).join('')}${conf}\n${typeof opts.extraConf === 'function' ? opts.extraConf(dir) : (opts.extraConf ?? '')}\n`;
  const confFile = join(dir, 'mosquitto.conf');
  writeFileSync(confFile, conf);

  const log: string[] = [];
  /** Spawns mosquitto on the config above and waits until it is ready. */
  const launch = async (): Promise<{ proc: ChildProcess; exited: Promise<void> }> => {
    const proc = spawn('mosquitto', ['-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    const ready = new Promise<void>((resolveReady, reject) => {
      const onData = (chunk: Buffer): void => {
        for (const line of chunk.toString().split('\n')) {
          if (!line) continue;
          log.push(line);
          if (process.env.TEST_LOG) process.stderr.write(`[mosquitto] ${line}\n`);
          if (/mosquitto version .* running/.test(line)) resolveReady();
        }
      };
      proc.stderr!.on('data', onData);
      proc.stdout!.on('data', onData);
      proc.once('exit', (code) => reject(new Error(`mosquitto exited (${code}) before it was ready:\n${log.join('\n')}`)));
      // Quiet (no notices): ready when the hub listener, opened last, accepts.
      if (opts.quiet) void acceptsOn(hubPort).then(resolveReady);
    });
    const timer = setTimeout(() => proc.kill('SIGTERM'), 20_000);
    try {
      await ready;
    } finally {
      clearTimeout(timer);
    }
    return { proc, exited };
  };
  let current = await launch();
  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const { proc, exited } = current;
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
  };
  return {
    dir,
    devicePort,
    hubPort,
    caFile,
    caPem: Buffer.from(ca.certPem),
    get proc() {
      return current.proc;
    },
    log,
    addUser,
    reload: () => current.proc.kill('SIGHUP'),
    async restart() {
      await halt('SIGKILL');
      current = await launch();
    },
    async stop() {
      await halt('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
