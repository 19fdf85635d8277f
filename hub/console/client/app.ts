import '@xterm/xterm/css/xterm.css';
import './app.css';
import { loadSession, post } from './api';
import { byId, el } from './dom';
import { DevicesView } from './devices';
import type { LiveState } from './state';
import { StreamsView } from './streams';
import { TerminalTab } from './terminal';

/**
 * The console's page: devices and streams kept live from one server-sent event stream, terminals
 * in tabs. Routes are the URL's hash (#/devices, #/streams, #/terminal/N).
 */
const view = byId('view');
const tabsBar = byId('tabs');
const terminals = new Map<number, { tab: TerminalTab; button: HTMLElement }>();
let nextTab = 1;

const devices = new DevicesView({ terminal: (deviceId, service) => openTerminal(deviceId, service) });
const streams = new StreamsView((id) => {
  void post(`/console/api/streams/${id}/close`);
});

function openTerminal(deviceId: string, service: string): void {
  const n = nextTab++;
  const tab = new TerminalTab(deviceId, service, () => button.classList.add('ended'));
  const button = el(
    'span',
    { class: 'tab', 'data-tab': String(n) },
    el('a', { href: `#/terminal/${n}` }, `${deviceId} · ${service}`),
    el('button', { type: 'button', class: 'tab-close', 'aria-label': 'close terminal', onclick: () => closeTerminal(n) }, '×'),
  );
  terminals.set(n, { tab, button });
  tabsBar.append(button);
  location.hash = `#/terminal/${n}`;
  route();
}

function closeTerminal(n: number): void {
  const t = terminals.get(n);
  if (!t) return;
  t.tab.close();
  t.tab.root.remove();
  t.button.remove();
  terminals.delete(n);
  if (location.hash === `#/terminal/${n}`) location.hash = '#/devices';
}

function route(): void {
  const hash = location.hash || '#/devices';
  const term = /^#\/terminal\/(\d+)$/.exec(hash);
  let shown: HTMLElement = devices.root;
  if (hash === '#/streams') shown = streams.root;
  else if (term && terminals.has(Number(term[1]))) shown = terminals.get(Number(term[1]))!.tab.root;
  for (const child of [devices.root, streams.root, ...[...terminals.values()].map((t) => t.tab.root)]) {
    if (child === shown) {
      if (child.parentElement !== view) view.append(child);
      child.hidden = false;
    } else {
      child.hidden = true;
      if (child.parentElement !== view) view.append(child);
    }
  }
  for (const a of document.querySelectorAll<HTMLElement>('[data-nav]')) a.classList.toggle('active', `#/${a.dataset.nav}` === hash);
  for (const [n, t] of terminals) t.button.classList.toggle('active', hash === `#/terminal/${n}`);
  if (term) terminals.get(Number(term[1]))?.tab.focus();
}

function live(): void {
  const source = new EventSource('/console/api/events');
  source.addEventListener('state', (ev) => {
    const state = JSON.parse((ev as MessageEvent<string>).data) as LiveState;
    devices.update(state.devices);
    streams.update(state.streams, state.audit);
    document.body.dataset.live = 'on';
  });
  source.onerror = () => {
    document.body.dataset.live = 'off';
    // Signed out elsewhere (or the operator removed): back to the sign-in page.
    void loadSession().then((s) => {
      if (!s) toSignIn();
    }, () => undefined);
  };
}

let leaving = false;
/**
 * To the sign-in page, once: signing out also ends the live view, whose error handler would navigate
 * as well, and a second navigation aborts the first.
 */
function toSignIn(): void {
  if (leaving) return;
  leaving = true;
  location.assign('/console/login');
}

async function main(): Promise<void> {
  const session = await loadSession();
  if (!session) return toSignIn();
  byId('operator').textContent = session.operator;
  if (session.devicePagesPort) devices.pagesOrigin = `https://${location.hostname}:${session.devicePagesPort}`;
  byId('signout').addEventListener('click', () => {
    // The hub ends the session's terminals and live view itself.
    void post('/console/api/logout').finally(toSignIn);
  });
  window.addEventListener('hashchange', route);
  route();
  live();
}

void main();
