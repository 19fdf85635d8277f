import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { addDevice, serviceConnectionString, startAgentProcess, type CliProcess } from './helpers/cli';
import { call, startConsoleHub, type Reply } from './helpers/console';
import { exchange, healthz, statusOf, upgradeRequest, wsFrame } from './helpers/hostile';

/**
 * The hub's web console (hub/console/) under hostile input, against the real hub process: every
 * request gets a clear refusal, nothing it sends crashes the hub or holds its memory, and the hub
 * keeps serving. Part of the hostile-input suite (test/hostile-*.test.ts).
 */
describe('hostile input to the web console', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-hostile-console-'));
  const dataDir = join(dir, 'hub');
  let hub: CliProcess & { port: number; pagesPort: number };
  let agent: CliProcess;
  let pagesPort: number;
  let key: string;
  let cookie: string;
  let origin: string;
  let csrf: string;

  const json = (extra: Record<string, string> = {}): Record<string, string> => ({ 'content-type': 'application/json', origin, ...extra });

  beforeAll(async () => {
    hub = await startConsoleHub(dataDir);
    pagesPort = hub.pagesPort;
    origin = `https://127.0.0.1:${hub.port}`;
    key = /SharedAccessKey=([^;]+)/.exec(await serviceConnectionString(dataDir))![1]!;
    const deviceString = await addDevice(dataDir, 'pi-001');
    agent = startAgentProcess({ config: join(dir, 'agent.yaml'), dataDir, deviceString, servicesYaml: '  shell:\n    pty:\n      command: /bin/sh\n' });
    await agent.waitForLine(/listening for stream requests/);
    const signIn = await call(hub.port, 'POST', '/console/api/login', json(), JSON.stringify({ operator: 'service', key }));
    expect(signIn.status).toBe(200);
    cookie = String(signIn.headers['set-cookie']).split(';')[0]!;
    csrf = (JSON.parse(signIn.body) as { csrf: string }).csrf;
  });
  afterAll(async () => {
    await agent?.stop();
    await hub?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sign-in: oversized, malformed, cross-site and form-encoded bodies are refused', async () => {
    expect((await call(hub.port, 'POST', '/console/api/login', json(), 'x'.repeat(1024 * 1024))).status).toBe(413);
    expect((await call(hub.port, 'POST', '/console/api/login', json(), '{"operator": ')).status).toBe(400);
    expect((await call(hub.port, 'POST', '/console/api/login', json(), '[1,2]')).status).toBe(400);
    expect((await call(hub.port, 'POST', '/console/api/login', json({ origin: 'https://evil.example' }), JSON.stringify({ operator: 'service', key }))).status).toBe(403);
    expect((await call(hub.port, 'POST', '/console/api/login', json({ 'sec-fetch-site': 'cross-site' }), JSON.stringify({ operator: 'service', key }))).status).toBe(403);
    expect((await call(hub.port, 'POST', '/console/api/login', { 'content-type': 'application/x-www-form-urlencoded', origin }, `operator=service&key=${encodeURIComponent(key)}`)).status).toBe(403);
    expect((await call(hub.port, 'POST', '/console/api/login', json(), JSON.stringify({ operator: { toString: 1 }, key: ['x'] }))).status).toBe(401);
    expect(await healthz(hub.port)).toBe(200);
  });

  it('sign-in: a burst of wrong keys from one address is throttled (429 with Retry-After)', async () => {
    let last: Reply | undefined;
    for (let i = 0; i < 15; i++) {
      last = await call(hub.port, 'POST', '/console/api/login', json(), JSON.stringify({ operator: 'service', key: `wrong-${i}` }));
      if (last.status === 429) break;
    }
    expect(last!.status).toBe(429);
    expect(Number(last!.headers['retry-after'])).toBeGreaterThan(0);
    await hub.waitForLine(/console sign-in refused: wrong operator or key/);
    expect(hub.stderr.join('\n')).not.toContain('wrong-0');
  });

  it('cookies: forged, oversized and repeated session cookies get no session', async () => {
    for (const c of ['__Host-devstreams-console=forged', `__Host-devstreams-console=${'A'.repeat(6000)}`, `a=b; ${'x=y; '.repeat(500)}`, '__Host-devstreams-console']) {
      expect((await call(hub.port, 'GET', '/console/api/session', { cookie: c })).status).toBe(401);
    }
    expect((await call(hub.port, 'GET', '/console/api/session', { cookie })).status).toBe(200);
  });

  it('state changes without the CSRF token or from another origin are refused', async () => {
    expect((await call(hub.port, 'POST', '/console/api/logout', json({ cookie }), '{}')).status).toBe(403);
    expect((await call(hub.port, 'POST', '/console/api/logout', json({ cookie, 'x-devstreams-csrf': csrf, origin: 'https://evil.example' }), '{}')).status).toBe(403);
    expect((await call(hub.port, 'POST', `/console/api/streams/${'0'.repeat(32)}/close`, json({ cookie, 'x-devstreams-csrf': csrf }), '{}')).status).toBe(404);
    expect((await call(hub.port, 'POST', '/console/api/streams/../../x/close', json({ cookie, 'x-devstreams-csrf': csrf }), '{}')).status).toBe(404);
    expect((await call(hub.port, 'GET', '/console/api/session', { cookie })).status).toBe(200);
  });

  it('odd console paths get 404 or the sign-in page, never a crash', async () => {
    for (const path of ['/console/%zz', '/console/assets/../../../etc/passwd', '/console/assets/%2e%2e%2fhub.json', '/console//api/session', `/console/${'a/'.repeat(4000)}`]) {
      const r = await call(hub.port, 'GET', path, { cookie });
      expect([303, 404, 431]).toContain(r.status);
      expect(r.body).not.toMatch(/BEGIN|primary_key|service_policy_key/);
    }
    for (const path of ['/console/d/%zz/web/', '/console/d/pi-001/%E0%A4%A/', `/console/d/${'x'.repeat(300)}/web/`, '/console/api/session']) {
      expect([401, 404]).toContain((await call(pagesPort, 'GET', path, { cookie })).status);
    }
    expect(await healthz(hub.port)).toBe(200);
  });

  it('terminal WebSocket: refused without a session or from another origin; junk frames are dropped or cut', async () => {
    expect(statusOf((await exchange(hub.port, [upgradeRequest('/console/api/terminal?device=pi-001')])).data)).toBe(401);
    expect(statusOf((await exchange(hub.port, [upgradeRequest('/console/api/terminal?device=pi-001', { cookie, origin: 'https://evil.example' })])).data)).toBe(403);
    expect(statusOf((await exchange(hub.port, [upgradeRequest(`/console/api/terminal?device=${'x'.repeat(500)}`, { cookie, origin, host: `127.0.0.1:${hub.port}` })])).data)).toBe(400);

    const ws = new WebSocket(`wss://127.0.0.1:${hub.port}/console/api/terminal?device=pi-001&service=shell`, { rejectUnauthorized: false, headers: { cookie, origin } });
    const events: string[] = [];
    ws.on('message', (d, isBinary) => !isBinary && events.push(String(d)));
    await new Promise<void>((r) => ws.on('message', (d, isBinary) => !isBinary && String(d).includes('"open"') && r()));
    // Not JSON, unknown type, sizes out of range: ignored; the shell still answers.
    for (const t of ['not json', '{"type":"resize","cols":1e9,"rows":-1}', '{"type":"exit","code":0}', '{"type":"hello","ext":["x"]}']) ws.send(t);
    ws.send(Buffer.from('echo still-$((1+1))\n'));
    let screen = '';
    await new Promise<void>((r) =>
      ws.on('message', (d, isBinary) => {
        if (isBinary) screen += d.toString();
        if (/still-2/.test(screen)) r();
      }),
    );
    // A frame over the console's 64 KiB limit ends this terminal (1009), not the hub.
    const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
    ws.send(Buffer.alloc(200 * 1024, 0x61));
    expect(await closed).toBe(1009);
    expect(await healthz(hub.port)).toBe(200);
  });

  it('a raw terminal frame announcing 2^52 bytes is cut at its header', async () => {
    const upgrade = upgradeRequest('/console/api/terminal?device=pi-001&service=shell', { cookie, origin, host: `127.0.0.1:${hub.port}` });
    const r = await exchange(hub.port, [upgrade, wsFrame(Buffer.alloc(0), { announce: 2 ** 52 })], { waitMs: 10_000 });
    expect(statusOf(r.data)).toBe(101);
    expect(r.closed).toBe(true);
    expect(await healthz(hub.port)).toBe(200);
  });
});
