import { ago, el, formatBytes } from './dom';
import type { AuditLine, OpenStream } from './state';

/** The streams page: what is open now (closable) and the hub's recent audit lines. */
export class StreamsView {
  readonly root: HTMLElement;
  private readonly open = el('tbody');
  private readonly recent = el('tbody');

  constructor(private readonly closeStream: (streamId: string) => void) {
    const head = (...titles: string[]): HTMLElement => el('thead', {}, el('tr', {}, ...titles.map((t) => el('th', {}, t))));
    this.root = el(
      'section',
      { id: 'streams' },
      el('h2', {}, 'Open streams'),
      el('div', { class: 'scroll' }, el('table', { class: 'grid', id: 'open-streams' }, head('Device', 'Service', 'Operator', 'Since', 'Device → service', 'Service → device', ''), this.open)),
      el('h2', {}, 'Recent audit'),
      el('div', { class: 'scroll' }, el('table', { class: 'grid', id: 'recent-streams' }, head('When', 'Operator', 'From', 'Device', 'Service', 'Outcome', 'Duration', 'Device → service', 'Service → device', 'Why'), this.recent)),
    );
  }

  update(open: OpenStream[], audit: AuditLine[]): void {
    this.open.replaceChildren(
      ...open.map((s) =>
        el(
          'tr',
          { 'data-stream': s.streamId },
          el('td', {}, s.deviceId),
          el('td', {}, s.service ?? ''),
          el('td', {}, s.operator ?? ''),
          el('td', {}, ago(s.since)),
          el('td', {}, formatBytes(s.deviceToService)),
          el('td', {}, formatBytes(s.serviceToDevice)),
          el('td', {}, el('button', { type: 'button', class: 'close-stream', onclick: () => this.closeStream(s.streamId) }, 'Close')),
        ),
      ),
    );
    this.recent.replaceChildren(
      ...audit.map((a) =>
        el(
          'tr',
          { class: `audit-${a.outcome}` },
          el('td', {}, ago(a.time)),
          el('td', {}, a.operator ?? ''),
          el('td', {}, a.remote ?? ''),
          el('td', {}, a.device),
          el('td', {}, a.service),
          el('td', {}, a.outcome),
          el('td', {}, `${(a.duration_ms / 1000).toFixed(1)} s`),
          el('td', {}, formatBytes(a.bytes_device_to_service)),
          el('td', {}, formatBytes(a.bytes_service_to_device)),
          el('td', {}, a.reason ?? ''),
        ),
      ),
    );
  }
}
