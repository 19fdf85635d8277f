/// <reference lib="dom" />
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { connect as mqttConnect } from 'mqtt';
import { createSasToken, deviceResourceUri, mqttUsername, parseDeviceConnectionString, telemetryTopic } from '../wire';
import { addDevice, lastLine, runCliToEnd, startAgentProcess, type CliProcess } from './helpers/cli';
import { call, startConsoleHub, type Reply } from './helpers/console';
import { startBrowser } from './helpers/browser';
import { startDeviceWeb } from './helpers/device-web';

/**
 * The hub's web console in Debian's Chromium (playwright-core), against real hub and agent
 * processes on loopback. The screenshots in docs/console.md are made here: a run writes them into its
 * own directory, and into docs/console/ only when asked (`make screenshots`), so a test run never
 * rewrites tracked files.
 */
const DOCS_SHOTS = resolve(__dirname, '../docs/console');
const WAIT_MS = 30_000;

/** The terminal's screen as text, one line per row (xterm.js's DOM renderer). */
async function screenLines(page: Page): Promise<string[]> {
  return page.$$eval('.terminal:not([hidden]) .xterm-rows > div', (rows) => rows.map((r) => (r.textContent ?? '').replace(/\u00a0/g, ' ').trimEnd()));
}

async function waitForScreen(page: Page, re: RegExp): Promise<RegExpMatchArray> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const lines = await screenLines(page);
    for (const l of lines) {
      const m = re.exec(l);
      if (m) return m;
    }
    if (Date.now() > deadline) throw new Error(`no terminal line matching ${re}; the screen shows:\n${lines.join('\n')}`);
    await page.waitForTimeout(50);
  }
}

/** An Upgrade to the console's terminal with a given cookie: the HTTP status the hub answers. */
function terminalUpgradeStatus(port: number, cookie: string): Promise<number> {
  return new Promise((resolveStatus, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}/console/api/terminal?device=pi-001&service=shell`, {
      rejectUnauthorized: false,
      headers: { cookie, origin: `https://127.0.0.1:${port}` },
    });
    ws.on('unexpected-response', (_req, res) => {
      resolveStatus(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on('open', () => {
      resolveStatus(101);
      ws.terminate();
    });
    ws.on('error', reject);
  });
}

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return call(port, 'GET', path, headers);
}

/** A terminal WebSocket with a session cookie, once the hub said the device's PTY is open; and its close code. */
async function openTerminalSocket(port: number, cookie: string, localAddress?: string): Promise<{ ws: WebSocket; closed: Promise<number> }> {
  const ws = new WebSocket(`wss://127.0.0.1:${port}/console/api/terminal?device=pi-001&service=shell`, {
    rejectUnauthorized: false,
    headers: { cookie, origin: `https://127.0.0.1:${port}` },
    ...(localAddress ? { localAddress } : {}),
  });
  const opened = new Promise<void>((done, fail) => {
    ws.on('message', (d, isBinary) => !isBinary && String(d).includes('"open"') && done());
    ws.on('error', fail);
  });
  const closed = new Promise<number>((done) => ws.on('close', (code) => done(code)));
  await opened;
  return { ws, closed };
}

/** Signs in as a script would (JSON, same Origin): the session cookie, or the HTTP status. */
function signIn(port: number, operator: string, key: string): Promise<{ status: number; cookie?: string }> {
  return new Promise((resolveRes, reject) => {
    const body = JSON.stringify({ operator, key });
    const req = request(
      { host: '127.0.0.1', port, path: '/console/api/login', method: 'POST', rejectUnauthorized: false, headers: { 'content-type': 'application/json', origin: `https://127.0.0.1:${port}`, 'content-length': Buffer.byteLength(body) } },
      (res) => {
        res.resume();
        const set = res.headers['set-cookie']?.[0];
        resolveRes({ status: res.statusCode ?? 0, ...(set ? { cookie: set.split(';')[0]! } : {}) });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('hub web console (Chromium)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-console-'));
  const dataDir = join(dir, 'hub');
  const SHOTS = process.env.DEVSTREAMS_UPDATE_SCREENSHOTS === '1' ? DOCS_SHOTS : join(dir, 'shots');
  let hub: CliProcess & { port: number; pagesPort: number };
  /** The hub's second port, for devices' own pages. */
  let pagesPort: number;
  const agents: CliProcess[] = [];
  let web: Awaited<ReturnType<typeof startDeviceWeb>>;
  let browser: Awaited<ReturnType<typeof startBrowser>>;
  let page: Page;
  let serviceKey: string;
  let base: string;

  async function startAgent(id: string): Promise<CliProcess> {
    const servicesYaml = ['  shell:', '    pty:', '      command: /bin/sh', '      env: { PS1: "remote$ " }', '  web:', `    port: ${web.port}`, ''].join('\n');
    const agent = startAgentProcess({ config: join(dir, `${id}.yaml`), dataDir, deviceString: await addDevice(dataDir, id), servicesYaml });
    agents.push(agent);
    await agent.waitForLine(/listening for stream requests/);
    return agent;
  }

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    web = await startDeviceWeb();
    hub = await startConsoleHub(dataDir);
    pagesPort = hub.pagesPort;
    base = `https://127.0.0.1:${hub.port}`;
    const svc = await runCliToEnd(['hub', 'service-string', '--data-dir', dataDir]);
    serviceKey = /SharedAccessKey=([^;]+)/.exec(lastLine(svc.stdout))![1]!;
    await startAgent('pi-001');
    browser = await startBrowser();
    page = await browser.context.newPage();
  });

  afterAll(async () => {
    await browser?.close();
    for (const a of agents) await a.stop();
    await hub?.stop();
    await web?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows nothing but the sign-in page and its assets without a session', async () => {
    for (const path of ['/console/', '/console/api/state', '/console/api/events', '/console/assets/app.js']) {
      const res = await get(hub.port, path);
      expect(res.status, path).not.toBe(200);
      expect(res.body, path).not.toContain('pi-001');
    }
    expect((await get(pagesPort, '/console/d/pi-001/web/')).status).toBe(401);
    expect((await get(hub.port, '/console/login')).status).toBe(200);
    expect((await get(hub.port, '/console/assets/login.js')).status).toBe(200);
    expect(await terminalUpgradeStatus(hub.port, '')).toBe(401);
  });

  it('refuses a wrong key, then signs in with the right one', async () => {
    await page.goto(`${base}/console/`);
    await page.waitForURL(/\/console\/login$/);
    await page.fill('input[name=key]', 'not-the-key');
    await page.click('button[type=submit]');
    await page.waitForFunction(() => document.getElementById('login-error')?.textContent?.includes('wrong operator or key'), undefined, { timeout: WAIT_MS });
    expect(page.url()).toMatch(/\/console\/login$/);

    await page.fill('input[name=key]', serviceKey);
    await page.click('button[type=submit]');
    await page.waitForURL(/\/console\/$/);
    const cookie = (await browser.context.cookies()).find((c) => c.name === '__Host-devstreams-console')!;
    expect(cookie).toMatchObject({ secure: true, httpOnly: true, sameSite: 'Strict', path: '/' });
    expect(await page.textContent('#operator')).toBe('service');
  });

  it('shows the device online with its telemetry, and a second agent appears without reloading', async () => {
    const row = 'tr[data-device="pi-001"].online';
    await page.waitForSelector(row, { timeout: WAIT_MS });
    // Health telemetry (sent right after connecting): the agent's version and memory use.
    await page.waitForFunction((sel) => {
      const r = document.querySelector(sel);
      return Boolean(r?.querySelector('td[data-col=version]')?.textContent && r.querySelector('td[data-col=mem]')?.textContent?.includes('%'));
    }, row, { timeout: WAIT_MS });
    await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));
    await startAgent('pi-002');
    await page.waitForSelector('tr[data-device="pi-002"].online', { timeout: WAIT_MS });
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
    // Filter by name.
    await page.fill('#device-filter', '002');
    await page.waitForFunction(() => document.querySelectorAll('tbody tr[data-device]').length === 1);
    await page.fill('#device-filter', '');
    await page.waitForFunction(() => document.querySelectorAll('tbody tr[data-device]').length === 2);
    await page.waitForFunction(() => document.querySelector('tr[data-device="pi-002"] td[data-col=mem]')?.textContent?.includes('%'), undefined, { timeout: WAIT_MS });
    // Sort by a column: the name column again turns the order around.
    const order = (): Promise<string[]> => page.$$eval('tbody tr[data-device]', (rows) => rows.map((r) => r.getAttribute('data-device')!));
    expect(await order()).toEqual(['pi-001', 'pi-002']);
    await page.click('th[data-col=name]');
    expect(await order()).toEqual(['pi-002', 'pi-001']);
    await page.click('th[data-col=name]');
    expect(await order()).toEqual(['pi-001', 'pi-002']);
    await page.screenshot({ path: join(SHOTS, 'devices.png') });
    // On a phone: the page fits the screen's width (the table scrolls inside its box).
    await page.setViewportSize({ width: 375, height: 700 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
    await page.setViewportSize({ width: 1000, height: 560 });
  });

  it("shows a hostile device's telemetry as text, never as markup", async () => {
    // A device (its own key, a plain MQTT client) that sends HTML and script in its health telemetry.
    const cs = parseDeviceConnectionString(lastLine((await runCliToEnd(['hub', 'add-device', 'evil-1', '--data-dir', dataDir])).stdout));
    const password = createSasToken({ resource: deviceResourceUri(cs.hostName, cs.deviceId), key: cs.sharedAccessKey!, expiresAt: Math.floor(Date.now() / 1000) + 3600 });
    const client = mqttConnect(`wss://127.0.0.1:${hub.port}/$iothub/websocket`, { clientId: cs.deviceId, username: mqttUsername(cs.hostName, cs.deviceId), password, protocolVersion: 4, rejectUnauthorized: false, reconnectPeriod: 0 });
    try {
      await new Promise<void>((done, fail) => {
        client.once('connect', () => done());
        client.once('error', fail);
      });
      const evil = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>';
      await client.publishAsync(telemetryTopic(cs.deviceId), JSON.stringify({ version: evil, cpu: { load_pct: '<b>9</b>', temp_c: 40 }, memory: { used_pct: 12 }, disks: [{ mount: '/', used_pct: 3 }] }));
      await page.waitForFunction((text) => document.querySelector('tr[data-device="evil-1"] td[data-col=version]')?.textContent === text, evil, { timeout: WAIT_MS });
      expect(await page.evaluate(() => ({ pwned: (window as unknown as { pwned?: number }).pwned, images: document.querySelectorAll('#devices img, #devices script, #devices b').length }))).toEqual({ pwned: undefined, images: 0 });
      // A number field that is not a number shows nothing rather than the device's text.
      expect(await page.textContent('tr[data-device="evil-1"] td[data-col=cpu]')).toBe('');
    } finally {
      await client.endAsync();
    }
    expect((await runCliToEnd(['hub', 'remove-device', 'evil-1', '--data-dir', dataDir])).code).toBe(0);
    await page.waitForSelector('tr[data-device="evil-1"]', { state: 'detached', timeout: WAIT_MS });
  });

  it('opens a terminal: keys, resize following the window, the exit status', async () => {
    await page.click('tr[data-device="pi-001"] button.open-terminal');
    await page.waitForFunction(() => document.querySelector('.terminal:not([hidden]) .term-status')?.textContent?.includes('connected'), undefined, { timeout: WAIT_MS });
    await waitForScreen(page, /^remote\$/);
    await page.keyboard.type('echo $((6*7))\n');
    await waitForScreen(page, /^42$/);
    // Paste, as the browser delivers it to xterm.js (a paste event on its input).
    await page.evaluate(() => {
      const data = new DataTransfer();
      data.setData('text/plain', 'echo pasted-$((2+3))\n');
      document.querySelector('.terminal:not([hidden]) textarea')!.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
    });
    await waitForScreen(page, /^pasted-5$/);

    await page.keyboard.type('echo "before $(stty size)"\n');
    const [, rows1, cols1] = (await waitForScreen(page, /^before (\d+) (\d+)$/)).map(Number);
    await page.setViewportSize({ width: 640, height: 420 });
    // The size follows the window: wait until xterm.js has fewer rows on the screen, then ask the PTY.
    await page.waitForFunction((r) => document.querySelectorAll('.terminal:not([hidden]) .xterm-rows > div').length < r, rows1!, { timeout: WAIT_MS });
    await page.keyboard.type('echo "after $(stty size)"\n');
    const domRows = await page.$$eval('.terminal:not([hidden]) .xterm-rows > div', (r) => r.length);
    const [, rows2, cols2] = (await waitForScreen(page, /^after (\d+) (\d+)$/)).map(Number);
    expect(rows2).toBe(domRows);
    expect(cols2).toBeLessThan(cols1!);
    await page.keyboard.type('printf "ready: %s\\n" $(uname -s)\n');
    await waitForScreen(page, /^ready: Linux$/);
    await page.screenshot({ path: join(SHOTS, 'terminal.png') });

    await page.keyboard.type('exit 3\n');
    await page.waitForFunction(() => document.querySelector('.terminal:not([hidden]) .term-status')?.textContent?.includes('exit status 3'), undefined, { timeout: WAIT_MS });
    await page.setViewportSize({ width: 1000, height: 560 });
    // The hub's audit line names the operator who opened it, like any other stream.
    await hub.waitForLine(/"audit":"stream".*"operator":"service".*"device":"pi-001","service":"shell".*"outcome":"closed"/);
  });

  it("shows why a terminal could not open (a service the device does not offer)", async () => {
    await page.goto(`${base}/console/#/devices`);
    const setService = (name: string): Promise<void> => page.$eval('#term-service', (input, v) => void ((input as HTMLInputElement).value = v), name);
    await setService('nope');
    await page.click('tr[data-device="pi-001"] button.open-terminal');
    await page.waitForFunction(() => /error: .*refused/.test(document.querySelector('.terminal:not([hidden]) .term-status')?.textContent ?? ''), undefined, { timeout: WAIT_MS });
    await setService('shell');
    await page.click('.tab.active .tab-close');
  });

  it("opens the device's own web page through the hub, WebSocket included, on a port of its own", async () => {
    await page.goto(`${base}/console/#/devices`);
    const [devicePage] = await Promise.all([browser.context.waitForEvent('page'), page.click('tr[data-device="pi-001"] a.open-web')]);
    await devicePage.waitForLoadState();
    expect(new URL(devicePage.url()).port).toBe(String(pagesPort));
    expect(await devicePage.title()).toBe('Device dashboard');
    await devicePage.waitForFunction(() => document.getElementById('ws')?.textContent === 'WebSocket: echo: ping from the page', undefined, { timeout: WAIT_MS }).catch((err) => {
      throw new Error(`${err}; device saw: ${web.requests.join(' | ')}`);
    });
    await devicePage.screenshot({ path: join(SHOTS, 'device-web.png') });
    // A device's script cannot read the console (another origin) nor open a terminal from it.
    const reach = await devicePage.evaluate(async (consoleOrigin) => {
      const api = await fetch(`${consoleOrigin}/console/api/session`, { credentials: 'include' }).then(
        () => 'read',
        () => 'blocked',
      );
      const term = await new Promise<string>((done) => {
        const ws = new window.WebSocket(`${consoleOrigin.replace('https', 'wss')}/console/api/terminal?device=pi-001&service=shell`);
        ws.onopen = () => done('opened');
        ws.onclose = () => done('refused');
      });
      return { api, term };
    }, base);
    expect(reach).toEqual({ api: 'blocked', term: 'refused' });
    await devicePage.close();
    // The console's session cookie never reaches the device.
    expect(web.requests.length).toBeGreaterThan(0);
    for (const r of web.requests) expect(r).not.toContain('devstreams-console');
    // Never served in the console's origin: the console's port sends it to the pages port, which serves nothing else.
    const there = await get(hub.port, '/console/d/pi-001/web/');
    expect(there.status).toBe(307);
    expect(there.headers.location).toBe(`https://127.0.0.1:${pagesPort}/console/d/pi-001/web/`);
    expect((await get(pagesPort, '/console/')).status).toBe(404);
    expect((await get(pagesPort, '/console/api/session')).status).toBe(404);
  });

  it('lists an open stream with its operator, and closes it', async () => {
    await page.goto(`${base}/console/#/devices`);
    await page.click('tr[data-device="pi-002"] button.open-terminal');
    await page.waitForFunction(() => document.querySelector('.terminal:not([hidden]) .term-status')?.textContent?.includes('connected'), undefined, { timeout: WAIT_MS });
    // Two terminals, each in its tab (the first one's shell has ended).
    expect(await page.$$eval('#tabs .tab', (tabs) => tabs.map((t) => t.textContent))).toEqual(['pi-001 · shell×', 'pi-002 · shell×']);
    await page.click('a[data-nav=streams]');
    // The first terminal (pi-001) has ended: its stream is no longer listed.
    const row = '#open-streams tr[data-stream]';
    await page.waitForFunction((sel) => document.querySelectorAll(sel).length === 1 && document.querySelector(sel)?.textContent?.startsWith('pi-002'), row, { timeout: WAIT_MS });
    expect(await page.$$eval(`${row} td`, (tds) => tds.slice(0, 3).map((t) => t.textContent))).toEqual(['pi-002', 'shell', 'service']);
    await page.click(`${row} button.close-stream`);
    await page.waitForSelector(row, { state: 'detached', timeout: WAIT_MS });
    // The hub's audit line for it: operator, device, service, how it ended.
    await page.waitForFunction(
      () => Array.from(document.querySelectorAll('#recent-streams tr')).some((tr) => /^.*ago\s*service.*pi-002\s*shell\s*closed/.test(Array.from(tr.children).map((td) => td.textContent).join(' '))),
      undefined,
      { timeout: WAIT_MS },
    );
  });

  it('ends the sessions of an operator when it is removed, open terminals included', async () => {
    const add = await runCliToEnd(['hub', 'add-operator', 'alice', '--data-dir', dataDir]);
    expect(add.code).toBe(0);
    const key = /SharedAccessKey=([^;\s]+)/.exec(add.stdout)![1]!;
    expect((await signIn(hub.port, 'alice', 'wrong')).status).toBe(401);
    const { status, cookie } = await signIn(hub.port, 'alice', key);
    expect(status).toBe(200);
    // From another loopback address than the hub's own dial: the audit names the browser's.
    const { closed } = await openTerminalSocket(hub.port, cookie!, '127.0.0.2');
    expect((await runCliToEnd(['hub', 'remove-operator', 'alice', '--data-dir', dataDir])).code).toBe(0);
    expect(await closed).toBe(4004);
    await hub.waitForLine(/"audit":"stream".*"operator":"alice","remote":"127\.0\.0\.2","device":"pi-001","service":"shell"/);
    expect((await get(hub.port, '/console/api/session', { cookie: cookie! })).status).toBe(401);
    expect(await terminalUpgradeStatus(hub.port, cookie!)).toBe(401);
  });

  it("signs out: the terminal's WebSocket is refused, open ones end", async () => {
    await page.goto(`${base}/console/#/devices`);
    await page.click('tr[data-device="pi-001"] button.open-terminal');
    await page.waitForFunction(() => document.querySelector('.terminal:not([hidden]) .term-status')?.textContent?.includes('connected'), undefined, { timeout: WAIT_MS });
    const cookie = (await browser.context.cookies()).find((c) => c.name === '__Host-devstreams-console')!;
    const header = `${cookie.name}=${cookie.value}`;
    const open = await openTerminalSocket(hub.port, header);
    // A state change without the CSRF token is refused.
    const forged = await page.evaluate(() => fetch('/console/api/logout', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).then((r) => r.status));
    expect(forged).toBe(403);

    await page.click('#signout');
    await page.waitForURL(/\/console\/login$/, { timeout: WAIT_MS });
    expect(await open.closed).toBe(4004);
    expect(await terminalUpgradeStatus(hub.port, header)).toBe(401);
    const refused = await page.evaluate(
      () =>
        new Promise<number>((done) => {
          // window.WebSocket: the browser's (this file's WebSocket is the ws package's).
          const ws = new window.WebSocket(`wss://${location.host}/console/api/terminal?device=pi-001&service=shell`);
          ws.onopen = () => done(-1);
          ws.onclose = (ev) => done(ev.code);
        }),
    );
    expect(refused).toBe(1006);
    for (const shot of ['devices.png', 'terminal.png', 'device-web.png']) expect(statSync(join(SHOTS, shot)).size).toBeLessThan(200_000);
  });
});
