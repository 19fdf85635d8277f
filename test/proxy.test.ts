import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../agent/agent';
import { parseAgentConfig } from '../agent/config';
import { ControlChannel } from '../agent/control-channel';
import { Backoff } from '../core/backoff';
import { addX509Device } from '../cli/run/hub-devices';
import { dialThroughProxy, parseProxyUrl, proxyFor } from '../core/proxy';
import { HubClient } from '../service/hub-client';
import { isDevstreamsError, parseDeviceConnectionString, parseServiceConnectionString } from '../wire';
import { freePort } from './helpers/free-port';
import { startTinyproxy, type Tinyproxy } from './helpers/tinyproxy';
import { startStack, testLogger, until, type Stack } from './helpers/stack';
import { roundTrip, startEchoServer } from './helpers/targets';
import { capturingLogger } from './helpers/log-capture';

/** One stream from a fresh service client (proxy from `proxyUrl`, else the environment): text out, echo back. */
async function echoOnce(stack: Stack, deviceId: string, text: string, proxyUrl?: string): Promise<string> {
  const client = new HubClient({
    service: parseServiceConnectionString(stack.serviceConnectionString),
    caPem: stack.caPem,
    caFile: stack.caFile,
    ...(proxyUrl ? { proxy: proxyUrl } : {}),
  });
  try {
    const ws = await client.openStream(await client.requestStream(deviceId, 'echo'));
    const reply = new Promise<Buffer>((resolve) => ws.on('message', (d: Buffer, isBinary: boolean) => isBinary && resolve(d)));
    ws.resume();
    ws.send(Buffer.from(text));
    const back = (await reply).toString();
    ws.close();
    return back;
  } finally {
    client.close();
  }
}

describe('HTTP CONNECT proxy (tinyproxy) for control channel and streams', () => {
  let stack: Stack;
  let proxy: Tinyproxy;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let hubPort: number;
  const savedEnv = { HTTPS_PROXY: process.env.HTTPS_PROXY, NO_PROXY: process.env.NO_PROXY };

  beforeAll(async () => {
    stack = await startStack({ hub: { mqttListen: { host: '127.0.0.1', port: 0 } } });
    hubPort = stack.hub.port;
    echo = await startEchoServer();
    // Only the hub's two ports: the echo target is NOT reachable through the proxy.
    proxy = await startTinyproxy([hubPort, stack.hub.mqttPort]);
  });
  afterEach(() => {
    for (const [k, v] of Object.entries(savedEnv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  afterAll(async () => {
    await stack?.stop();
    await proxy?.stop();
    await echo?.close();
  });

  it('MQTT over WebSocket and both stream legs go through the proxy (config hub.proxy, service --proxy)', async () => {
    const before = proxy.connectsTo(hubPort);
    await stack.startAgent(`  echo:\n    port: ${echo.port}\n`, { deviceId: 'pi-ws', extraHubYaml: `  proxy: "${proxy.url}"\n` });
    // control channel: one CONNECT to the hub's port
    expect(proxy.connectsTo(hubPort)).toBe(before + 1);
    expect(await echoOnce(stack, 'pi-ws', 'through the proxy', proxy.url)).toBe('through the proxy');
    // REST request, the service's stream leg and the agent's stream leg: three more CONNECTs.
    await until(() => proxy.connectsTo(hubPort) >= before + 4, 'the REST request and both stream legs to pass the proxy');
    expect(proxy.log()).not.toContain('s3cret-pass');
  });

  it('the agent never logs the proxy password, at debug level, across a connect and a stream', async () => {
    const { log, text } = capturingLogger('trace');
    const yaml = `hub:\n  connection_string: "${stack.deviceConnectionString('pi-logs')}"\n  ca: ${stack.caFile}\n  proxy: "${proxy.url}"\nservices:\n  echo:\n    port: ${echo.port}\n`;
    const agent = new Agent(parseAgentConfig(yaml, 'logs.yaml').config!, log);
    try {
      await agent.start();
      await until(() => agent.connected, 'the agent to connect through the proxy');
      expect(await echoOnce(stack, 'pi-logs', 'quiet', proxy.url)).toBe('quiet');
    } finally {
      await agent.stop();
    }
    expect(text()).toContain(`"proxy":"http://127.0.0.1:${proxy.port}"`);
    expect(text()).not.toContain('s3cret-pass');
    expect(text()).not.toContain(Buffer.from('dev:s3cret-pass').toString('base64'));
  });

  it('MQTT over TLS (8883-style listener) goes through the proxy too, with HTTPS_PROXY for the service', async () => {
    const mqttPort = stack.hub.mqttPort;
    expect(mqttPort).toBeGreaterThan(0);
    const before = proxy.connectsTo(mqttPort);
    await stack.startAgent(`  echo:\n    port: ${echo.port}\n`, {
      deviceId: 'pi-tls',
      extraHubYaml: `  proxy: "${proxy.url}"\n  transport: mqtt_tls\n  mqtt_tls_port: ${mqttPort}\n`,
    });
    expect(proxy.connectsTo(mqttPort)).toBe(before + 1);
    process.env.HTTPS_PROXY = proxy.url;
    delete process.env.NO_PROXY;
    const beforeHub = proxy.connectsTo(hubPort);
    expect(await echoOnce(stack, 'pi-tls', 'over mqtt/tls')).toBe('over mqtt/tls');
    await until(() => proxy.connectsTo(hubPort) >= beforeHub + 3, 'REST and both stream legs to pass the proxy');
  });

  it.each(['websocket', 'mqtt_tls'] as const)('an X.509 device (%s) presents its certificate through the proxy tunnel', async (transport) => {
    const out = mkdtempSync(join(tmpdir(), 'devstreams-proxy-x509-'));
    try {
      const id = `pi-x509-${transport.replace('_', '-')}`;
      const issued = addX509Device(stack.dir, id, out);
      const before = proxy.connectsTo(transport === 'websocket' ? hubPort : stack.hub.mqttPort);
      const yaml = [
        'hub:',
        `  connection_string: "${issued.connectionString}"`,
        `  ca: ${stack.caFile}`,
        `  cert: ${issued.certFile}`,
        `  key: ${issued.keyFile}`,
        `  proxy: "${proxy.url}"`,
        `  transport: ${transport}`,
        `  mqtt_tls_port: ${stack.hub.mqttPort}`,
        'services:',
        '  echo:',
        `    port: ${echo.port}`,
        '',
      ].join('\n');
      const agent = new Agent(parseAgentConfig(yaml, 'x509.yaml').config!, testLogger('agent'));
      try {
        await agent.start();
        await until(() => agent.connected, 'the X.509 agent to connect through the proxy');
        expect(proxy.connectsTo(transport === 'websocket' ? hubPort : stack.hub.mqttPort)).toBe(before + 1);
        expect(await echoOnce(stack, id, 'x509 via proxy', proxy.url)).toBe('x509 via proxy');
      } finally {
        await agent.stop();
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('`connect` end to end through the proxy', async () => {
    process.env.HTTPS_PROXY = proxy.url;
    const before = proxy.connectsTo(hubPort);
    const c = await stack.connect('pi-ws', 'echo');
    const back = await roundTrip(c.address.port, Buffer.from('x'.repeat(100_000)));
    expect(back.length).toBe(100_000);
    // at least both stream legs (the stack's REST client was made before HTTPS_PROXY was set)
    await until(() => proxy.connectsTo(hubPort) >= before + 2, 'both stream legs to pass the proxy');
  });

  it('says clearly when the proxy refuses the destination, without the password', async () => {
    const err = await dialThroughProxy(parseProxyUrl(proxy.url), '127.0.0.1', echo.port).catch((e: unknown) => e);
    expect(isDevstreamsError(err, 'EPROXY')).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`the proxy http://127.0.0.1:${proxy.port} refused to connect to 127.0.0.1:${echo.port} \\(HTTP 403`));
    expect((err as Error).message).not.toContain('s3cret-pass');
  });

  it('says clearly when the proxy wants other credentials', async () => {
    const wrong = proxy.url.replace('s3cret-pass', 'wrong');
    const client = new HubClient({ service: parseServiceConnectionString(stack.serviceConnectionString), caPem: stack.caPem, proxy: wrong });
    try {
      const err = await client.requestStream('pi-ws', 'echo').catch((e: unknown) => e);
      expect(isDevstreamsError(err, 'EPROXY')).toBe(true);
      expect((err as Error).message).toMatch(/wants credentials \(HTTP 40[17] .*user name or password in the proxy URL was not accepted/);
      expect((err as Error).message).not.toContain('wrong');
    } finally {
      client.close();
    }
    const none = await dialThroughProxy(parseProxyUrl(`http://127.0.0.1:${proxy.port}`), '127.0.0.1', hubPort).catch((e: unknown) => e);
    expect((none as Error).message).toMatch(/put them in the proxy URL/);
  });

  it.each(['websocket', 'mqtt_tls'] as const)('agent (%s): a proxy refusing its credentials is named in lastError, without the password', async (transport) => {
    const ch = new ControlChannel({
      device: parseDeviceConnectionString(stack.deviceConnectionString(`pi-refused-${transport}`)),
      caPem: stack.caPem,
      log: testLogger('control'),
      transport,
      mqttTlsPort: stack.hub.mqttPort,
      proxy: proxy.url.replace('s3cret-pass', 'not-it'),
      backoff: new Backoff({ baseMs: 50, capMs: 200 }),
    });
    try {
      ch.start();
      await until(() => /wants credentials/.test(ch.lastError ?? ''), 'the proxy refusal to be reported');
      expect(ch.lastError).toContain(`the proxy http://127.0.0.1:${proxy.port} wants credentials`);
      expect(ch.lastError).not.toContain('not-it');
      expect(ch.connected).toBe(false);
    } finally {
      await ch.stop();
    }
  });

  it('says clearly when the proxy itself is not there', async () => {
    const port = await freePort();
    const err = await dialThroughProxy(parseProxyUrl(`http://127.0.0.1:${port}`), '127.0.0.1', hubPort).catch((e: unknown) => e);
    expect((err as Error).message).toBe(`cannot reach the proxy http://127.0.0.1:${port}: connection refused`);
  });
});

describe('which proxy applies', () => {
  const env = { HTTPS_PROXY: 'http://p.example:3128', NO_PROXY: 'localhost,.internal.example,10.1.2.3,hub.example:8443' };
  it.each([
    ['hub.example', 443, undefined, 'http://p.example:3128'],
    ['hub.example', 8443, undefined, undefined],
    ['a.internal.example', 443, undefined, undefined],
    ['internal.example', 443, undefined, undefined],
    ['localhost', 443, undefined, undefined],
    ['10.1.2.3', 443, undefined, undefined],
    ['hub.example', 443, 'none', undefined],
    ['a.internal.example', 443, 'http://u:p@q.example:8080', 'http://q.example:8080'],
  ])('%s:%d (config %s) → %s', (host, port, configured, expected) => {
    expect(proxyFor(host, port, configured, env)?.display).toBe(expected);
  });

  it('a bad hub.proxy is a config error at its line', () => {
    const yaml = 'hub:\n  connection_string: "HostName=h;DeviceId=d;SharedAccessKey=aGVsbG8="\n  proxy: socks5://p.example:1080\n';
    const { config, problems } = parseAgentConfig(yaml, 'a.yaml');
    expect(config).toBeUndefined();
    expect(problems).toEqual([{ file: 'a.yaml', line: 3, col: 10, message: 'hub.proxy: proxy scheme socks5: is not supported (only http:// CONNECT proxies)' }]);
    expect(parseAgentConfig(yaml.replace('socks5://p.example:1080', 'none'), 'a.yaml').config?.hub.proxy).toBe('none');
  });

  it('never lets the password into what may be logged, but sends it', () => {
    const p = parseProxyUrl('http://user:p%40ss@proxy.example:3128');
    expect(p.display).toBe('http://proxy.example:3128');
    expect(Buffer.from(p.authorization!.slice('Basic '.length), 'base64').toString()).toBe('user:p@ss');
    expect(() => parseProxyUrl('socks5://proxy.example:1080')).toThrow(/only http:\/\/ CONNECT proxies/);
  });
});
