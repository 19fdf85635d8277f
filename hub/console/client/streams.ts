import { ago, el, formatBytes } from './dom';
import type { ClosedStream, OpenStream } from './state';

/** The streams page: what is open now (closable) and the last closed streams, as the hub's audit has them. */
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
      el('h2', {}, 'Recently closed'),
      el('div', { class: 'scroll' }, el('table', { class: 'grid', id: 'recent-streams' }, head('Closed', 'Device', 'Service', 'Operator', 'Duration', 'Device → service', 'Service → device', 'Close codes'), this.recent)),
    );
  }

  update(open: OpenStream[], recent: ClosedStream[]): void {
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
      ...recent.map((s) =>
        el(
          'tr',
          {},
          el('td', {}, ago(s.closedAt)),
          el('td', {}, s.deviceId),
          el('td', {}, s.service ?? ''),
          el('td', {}, s.operator ?? ''),
          el('td', {}, `${(s.durationMs / 1000).toFixed(1)} s`),
          el('td', {}, formatBytes(s.deviceToService)),
          el('td', {}, formatBytes(s.serviceToDevice)),
          el('td', {}, `${s.deviceClose ?? ''} / ${s.serviceClose ?? ''}`),
        ),
      ),
    );
  }
}
