import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLE, lastLine, requireBundle, runCli, runCliToEnd, type CliProcess } from './helpers/cli';
import { random, sha256 } from './helpers/targets';
import { until } from './helpers/stack';
import { startTinyproxy, type Tinyproxy } from './helpers/tinyproxy';

/**
 * The device and the service side each run in their own network namespace (`unshare -n`: nothing but
 * a fresh loopback), so the hub is *not* reachable from them at all; their only way out is a unix
 * socket bridged (socat) to tinyproxy in the host namespace, which lets CONNECT through to the hub's
 * port only. A stream that works here went through the proxy, control channel and streams alike.
 * Needs root or CAP_SYS_ADMIN for unshare; skipped, saying so, where that is not allowed.
 */
const canUnshare = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up']).status === 0;
if (!canUnshare) console.warn('proxy-netns.test.ts: unshare -n (or ip link set lo up in it) is not permitted here; the network-namespace proxy test is skipped');

/** Inside a fresh namespace every port is free: fixed ports are safe there (and only there). */
const NS_PROXY_PORT = 3128;
const NS_CONNECT_PORT = 4000;
const NS_ECHO_PORT = 5000;

describe.skipIf(!canUnshare)('hub reachable only through the proxy (network namespaces)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-netns-'));
  const dataDir = join(dir, 'hub');
  let hub: CliProcess;
  let hubPort: number;
  let proxy: Tinyproxy;
  const children: ChildProcess[] = [];
  const output: string[] = [];

  /** Runs `script` under `unshare -n` in its own process group (so stop() ends all of it, and only it). */
  function inNamespace(name: string, script: string): ChildProcess {
    const child = spawn('unshare', ['-n', 'sh', '-c', `ip link set lo up\n${script}`], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [child.stdout!, child.stderr!]) {
      let partial = '';
      stream.on('data', (d: Buffer) => {
        const lines = (partial + d.toString()).split('\n');
        partial = lines.pop() ?? '';
        output.push(...lines.map((l) => `[${name}] ${l}`));
      });
    }
    children.push(child);
    return child;
  }

  /** The host end of a bridge: unix socket → tinyproxy. */
  function bridgeToProxy(sock: string): ChildProcess {
    const child = spawn('socat', [`UNIX-LISTEN:${sock},fork`, `TCP:127.0.0.1:${proxy.port}`], { detached: true, stdio: 'ignore' });
    children.push(child);
    return child;
  }

  beforeAll(async () => {
    requireBundle();
    hub = runCli(['hub', '--data-dir', dataDir, '--listen', '127.0.0.1:0']);
    const line = await hub.waitForLine(/^hub listening on /);
    hubPort = Number(/:(\d+) /.exec(line)![1]);
    proxy = await startTinyproxy([hubPort]);
  });
  afterAll(async () => {
    for (const c of children) {
      if (c.exitCode === null && c.pid) {
        const exited = new Promise((r) => c.once('exit', r));
        process.kill(-c.pid, 'SIGTERM');
        await exited;
      }
    }
    await hub?.stop();
    await proxy?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('agent and connect, each in a namespace without a route to the hub, make a byte-exact stream through the proxy', async () => {
    const ca = join(dataDir, 'ca.pem');
    const device = lastLine((await runCliToEnd(['hub', 'add-device', 'pi-netns', '--data-dir', dataDir])).stdout);
    const service = lastLine((await runCliToEnd(['hub', 'service-string', '--data-dir', dataDir])).stdout);
    const proxyInNs = proxy.url.replace(`:${proxy.port}`, `:${NS_PROXY_PORT}`);
    const config = join(dir, 'agent.yaml');
    writeFileSync(config, `hub:\n  connection_string: "${device}"\n  ca: ${ca}\n  proxy: "${proxyInNs}"\nservices:\n  echo:\n    port: ${NS_ECHO_PORT}\n`);

    const agentSock = join(dir, 'agent-proxy.sock');
    const connectSock = join(dir, 'connect-proxy.sock');
    const clientSock = join(dir, 'client.sock');
    bridgeToProxy(agentSock);
    bridgeToProxy(connectSock);
    const node = process.execPath;
    const direct = `if socat -u /dev/null TCP:127.0.0.1:${hubPort},connect-timeout=2 2>/dev/null; then echo HUB-DIRECTLY-REACHABLE; else echo HUB-NOT-DIRECTLY-REACHABLE; fi`;
    inNamespace(
      'agent',
      [
        direct,
        `socat TCP-LISTEN:${NS_PROXY_PORT},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:${agentSock} &`,
        `socat TCP-LISTEN:${NS_ECHO_PORT},bind=127.0.0.1,fork,reuseaddr EXEC:cat &`,
        `DEVSTREAMS_LOG_FORMAT=json exec ${node} ${BUNDLE} agent --config ${config}`,
      ].join('\n'),
    );
    inNamespace(
      'connect',
      [
        direct,
        `socat TCP-LISTEN:${NS_PROXY_PORT},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:${connectSock} &`,
        // the test reaches the namespace's `connect` port through this unix socket
        `socat UNIX-LISTEN:${clientSock},fork TCP:127.0.0.1:${NS_CONNECT_PORT} &`,
        `DEVSTREAMS_LOG_FORMAT=json DEVSTREAMS_CONNECTION_STRING='${service}' exec ${node} ${BUNDLE} connect pi-netns echo --listen 127.0.0.1:${NS_CONNECT_PORT} --ca ${ca} --proxy '${proxyInNs}'`,
      ].join('\n'),
    );
    await until(() => output.some((l) => l.startsWith('[agent]') && l.includes('listening for stream requests')), 'the agent to connect through the proxy', 30_000);
    await until(() => output.some((l) => l.startsWith('[connect]') && l.includes('listening on')), 'connect to listen', 30_000);
    expect(output.filter((l) => l.includes('HUB-NOT-DIRECTLY-REACHABLE'))).toHaveLength(2);
    expect(output.some((l) => l.includes('HUB-DIRECTLY-REACHABLE'))).toBe(false);

    const payload = random(2 * 1024 * 1024);
    const back = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let got = 0;
      const s = netConnect(clientSock, () => s.write(payload));
      s.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (got >= payload.length) s.end();
      });
      s.on('end', () => resolve(Buffer.concat(chunks)));
      s.on('error', reject);
    });
    if (sha256(back) !== sha256(payload)) console.log(output.filter((l) => /"level":(40|50)|error|E[A-Z]/.test(l)).join("\n"));
    expect(sha256(back)).toBe(sha256(payload));
    // control channel, REST request, and both stream legs: all CONNECTs to the hub's port
    expect(proxy.connectsTo(hubPort)).toBeGreaterThanOrEqual(4);
    expect(output.join('\n')).not.toContain('s3cret-pass');
  }, 90_000);
});
