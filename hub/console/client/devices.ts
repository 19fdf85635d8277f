import { ago, el } from './dom';
import { num, rootDisk, type Device } from './state';

type Column = { key: string; title: string; value: (d: Device) => string | number | undefined; show?: (d: Device) => string };

const pct = (v: number | undefined): string => (v === undefined ? '' : `${v.toFixed(0)} %`);

const COLUMNS: Column[] = [
  { key: 'name', title: 'Device', value: (d) => d.deviceId },
  { key: 'state', title: 'Status', value: (d) => (d.connectionState === 'Connected' ? 'online' : 'offline') },
  { key: 'since', title: 'Since', value: (d) => d.connectedSince ?? '', show: (d) => ago(d.connectedSince) },
  { key: 'seen', title: 'Last seen', value: (d) => d.lastActivityTime ?? '', show: (d) => ago(d.lastActivityTime) },
  { key: 'version', title: 'Agent', value: (d) => (typeof d.health?.version === 'string' ? d.health.version : '') },
  { key: 'cpu', title: 'CPU', value: (d) => num(d.health?.cpu?.load_pct), show: (d) => pct(num(d.health?.cpu?.load_pct)) },
  { key: 'temp', title: 'Temp', value: (d) => num(d.health?.cpu?.temp_c), show: (d) => (num(d.health?.cpu?.temp_c) === undefined ? '' : `${num(d.health?.cpu?.temp_c)!.toFixed(1)} °C`) },
  { key: 'mem', title: 'Memory', value: (d) => num(d.health?.memory?.used_pct), show: (d) => pct(num(d.health?.memory?.used_pct)) },
  { key: 'disk', title: 'Disk', value: (d) => rootDisk(d.health), show: (d) => pct(rootDisk(d.health)) },
  { key: 'streams', title: 'Streams', value: (d) => d.activeStreams },
];

export interface DeviceActions {
  terminal: (deviceId: string, service: string) => void;
}

/** The devices page: filter by name, sort by any column, rows rebuilt from each live state. */
export class DevicesView {
  readonly root: HTMLElement;
  private readonly body = el('tbody');
  private readonly filter = el('input', { type: 'search', placeholder: 'filter by name', 'aria-label': 'filter by name', id: 'device-filter' });
  private readonly termService = el('input', { value: 'shell', size: '6', 'aria-label': 'terminal service', id: 'term-service' });
  private readonly webService = el('input', { value: 'web', size: '6', 'aria-label': 'web service', id: 'web-service' });
  private readonly count = el('span', { class: 'muted' });
  private readonly head = el('tr');
  private sortKey = 'name';
  private sortDir = 1;
  private devices: Device[] = [];

  /** The origin devices' own pages are served from (another port of this hub); undefined: off. */
  pagesOrigin: string | undefined;

  constructor(private readonly actions: DeviceActions) {
    for (const c of COLUMNS) {
      this.head.append(el('th', { 'data-col': c.key, onclick: () => this.sortBy(c.key), tabindex: '0', title: 'sort' }, c.title));
    }
    this.head.append(el('th', {}, ''));
    this.filter.addEventListener('input', () => this.render());
    this.root = el(
      'section',
      { id: 'devices' },
      el('div', { class: 'toolbar' }, this.filter, this.count, el('label', {}, 'terminal ', this.termService), el('label', {}, 'web ', this.webService)),
      el('div', { class: 'scroll' }, el('table', { class: 'grid' }, el('thead', {}, this.head), this.body)),
    );
  }

  private sortBy(key: string): void {
    this.sortDir = this.sortKey === key ? -this.sortDir : 1;
    this.sortKey = key;
    this.render();
  }

  update(devices: Device[]): void {
    this.devices = devices;
    this.render();
  }

  private render(): void {
    const q = this.filter.value.trim().toLowerCase();
    const col = COLUMNS.find((c) => c.key === this.sortKey) ?? COLUMNS[0]!;
    const rows = this.devices
      .filter((d) => d.deviceId.toLowerCase().includes(q))
      .sort((a, b) => {
        const x = col.value(a);
        const y = col.value(b);
        if (x === y) return a.deviceId.localeCompare(b.deviceId);
        if (x === undefined || x === '') return 1;
        if (y === undefined || y === '') return -1;
        return (typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y))) * this.sortDir;
      });
    for (const th of this.head.querySelectorAll('th')) {
      th.classList.toggle('sorted', th.dataset.col === this.sortKey);
      th.dataset.dir = this.sortDir > 0 ? 'asc' : 'desc';
    }
    this.count.textContent = `${rows.filter((d) => d.connectionState === 'Connected').length} online of ${rows.length}`;
    this.body.replaceChildren(...rows.map((d) => this.row(d)));
  }

  private row(d: Device): HTMLTableRowElement {
    const online = d.connectionState === 'Connected';
    const tr = el('tr', { 'data-device': d.deviceId, class: online ? 'online' : 'offline' });
    for (const c of COLUMNS) {
      const text = c.show ? c.show(d) : String(c.value(d) ?? '');
      tr.append(el('td', { 'data-col': c.key }, c.key === 'state' ? el('span', { class: `dot ${online ? 'on' : 'off'}` }, text) : text));
    }
    const web = `${this.pagesOrigin ?? ''}/console/d/${encodeURIComponent(d.deviceId)}/${encodeURIComponent(this.webService.value.trim() || 'web')}/`;
    tr.append(
      el(
        'td',
        { class: 'actions' },
        el('button', { type: 'button', class: 'open-terminal', disabled: !online, onclick: () => this.actions.terminal(d.deviceId, this.termService.value.trim() || 'shell') }, 'Terminal'),
        ' ',
        online && this.pagesOrigin ? el('a', { href: web, target: '_blank', rel: 'noopener', class: 'open-web' }, 'Web') : '',
      ),
    );
    return tr;
  }
}
