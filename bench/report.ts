import type { HostileResult } from './hostile';
import type { AgentMemoryResult } from './memory';
import { MB, round, type Dist } from './stats';

type Paths<T> = { direct: T; socat: T; tunnel: T };

export interface BenchResults {
  date: string;
  /** `devstreams --version` of the bundle measured (version, build commit, Node, arch). */
  version?: string;
  quick: boolean;
  /** Which sections ran (`--only`); a section that did not run has no fields here. */
  sections?: string[];
  machine: { cpus: number; cpuModel: string; kernel: string; node: string; loadBefore: number[]; loadAfter: number[] };
  config: Record<string, number>;
  /** MB/s; upload = service → device, download = device → service. */
  /** `executable`: the x64 single executables as shipped (hub, agent, connect), when built. */
  throughput?: { upload: Paths<number> & { executable?: number }; download: Paths<number> & { executable?: number } };
  /** Every round, MB/s (the table shows the median). */
  throughputRuns?: Record<'upload' | 'download', { socat: number[]; tunnel: number[]; executable?: number[] }>;
  /** ms */
  rtt?: Paths<Dist>;
  /** Bytes per ping of the round trip (64; older results measured 1). */
  pingBytes?: number;
  setup?: { sequential: Paths<Dist>; parallel: Paths<Dist>; parallelErrors: number };
  /** The agent as shipped (bench/memory.ts), one entry per variant. */
  agentMemory?: AgentMemoryResult[];
  /** An idle `node` doing nothing, same run: the floor under any Node daemon. */
  nodeFloorRss?: number;
  concurrency?: {
    streams: number;
    byteExact: number;
    failed: number;
    openSeconds: number;
    agentRss: { at0: number; at100: number; atAll: number };
    /** devstreams_streams_active from the agent's metrics with all streams open. */
    agentActiveAtAll?: number;
    hubRssAtAll: number;
    connectRssAtAll: number;
    newStreamsPerS: number;
    rateErrors: number;
    rateSetup: Dist;
  };
  memory?: {
    agentIdleRss: number;
    /** An idle `node` doing nothing, same run: the floor under any Node daemon. */
    nodeFloorRss: number;
    seaAgentIdleRss?: { file: string; rss: number };
    agentRssAfterRun: number;
    agentActiveAfterRun?: number;
    floodBytes: number;
    stallSeconds: number;
    rssBeforeFlood: number;
    peakRssStalled: number;
    growthStalled: number;
    hubGrowthStalled: number;
    writtenWhileStalled: number;
    peakRssDraining: number;
    drained: { bytes: number; exact: boolean; mbPerS: number };
  };
  /** Hub RSS under hostile unauthenticated connections (bench/hostile.ts); absent in older results. */
  hostile?: HostileResult;
  cpu?: {
    agentSecPerGiB: number;
    hubSecPerGiB: number;
    connectSecPerGiB: number;
    /** socat's hop that does the agent's job (TLS in, TCP out). */
    socatHopSecPerGiB: number;
    socatHubHopSecPerGiB?: number;
    socatConnectHopSecPerGiB?: number;
    tunnelGiB: number;
    socatGiB: number;
    /** The same per direction (upload: service → device); absent in older results. */
    byDirection?: Record<'upload' | 'download', { agent: number; hub: number; connect: number; socatHop: number; socatHubHop: number; socatConnectHop: number }>;
    /** The same through the x64 single executables as shipped, with the runtime they carry. */
    executable?: { agentSecPerGiB: number; hubSecPerGiB: number; connectSecPerGiB: number; runtime: string; byDirection?: NonNullable<BenchResults['cpu']>['byDirection'] };
  };
  footprint: { bundleBytes: number; executables: Record<string, number>; packaging?: unknown };
  durationS: number;
  targets: TargetResult[];
}

export interface TargetResult {
  name: string;
  measured: string;
  goal: string;
  pass: boolean;
  /** How far from the limit: measured ÷ limit for "at most" goals, limit ÷ measured for "at least"; ≤ 1 passes. */
  load: number;
}

const mb = (bytes: number): number => round(bytes / MB, 1);

function atMost(name: string, value: number, limit: number, unit: string): TargetResult {
  return { name, measured: `${round(value, 2)} ${unit}`, goal: `≤ ${limit} ${unit}`, pass: value <= limit, load: value / limit };
}

function atLeast(name: string, value: number, limit: number, unit: string): TargetResult {
  return { name, measured: `${round(value, 2)} ${unit}`.trim(), goal: `≥ ${limit} ${unit}`.trim(), pass: value >= limit, load: value > 0 ? limit / value : Infinity };
}

/** Per-round ratios devstreams ÷ socat (rounds alternate, so each pair shares the machine's state). */
export function roundRatios(r: BenchResults, direction: 'upload' | 'download', path: 'tunnel' | 'executable' = 'tunnel'): number[] {
  const runs = r.throughputRuns?.[direction];
  if (!runs || runs.socat.length === 0) {
    const t = r.throughput?.[direction];
    return t?.[path] !== undefined ? [t[path]! / t.socat] : [];
  }
  return (runs[path] ?? []).map((t, i) => t / runs.socat[i]!);
}

/** Median and range of a few values, e.g. `0.55 (0.51–0.58)`. */
export function medianRange(xs: number[]): { median: number; min: number; max: number } {
  const sorted = [...xs].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)] ?? NaN, min: sorted[0] ?? NaN, max: sorted.at(-1) ?? NaN };
}

/**
 * The x64 single executable as the packages run it (with the unit's environment when that variant
 * ran, else alone): the figures issue 16's memory goals are about.
 */
function shippedX64(r: BenchResults): AgentMemoryResult | undefined {
  return r.agentMemory?.find((m) => m.name.startsWith('single executable x64 with')) ?? r.agentMemory?.find((m) => m.name === 'single executable x64');
}

export function evaluateTargets(r: BenchResults): TargetResult[] {
  const out: TargetResult[] = [];
  if (r.throughput) {
    for (const d of ['upload', 'download'] as const) {
      const m = medianRange(roundRatios(r, d));
      const t = atLeast(`throughput ${d} ÷ socat TLS chain (median of rounds)`, m.median, 0.75, '×');
      out.push({ ...t, measured: `${round(m.median, 2)} × (${round(m.min, 2)}–${round(m.max, 2)})` });
      const e = medianRange(roundRatios(r, d, 'executable'));
      if (!Number.isFinite(e.median)) continue;
      const te = atLeast(`x64 single executables: throughput ${d} ÷ socat TLS chain (median of rounds)`, e.median, 0.75, '×');
      out.push({ ...te, measured: `${round(e.median, 2)} × (${round(e.min, 2)}–${round(e.max, 2)})` });
    }
  }
  if (r.setup) {
    out.push(atMost('stream setup p50 (one at a time)', r.setup.sequential.tunnel.p50, 10, 'ms'));
    out.push(atMost('stream setup p99 (one at a time)', r.setup.sequential.tunnel.p99, 50, 'ms'));
  }
  const c = r.concurrency;
  if (c) {
    out.push({
      name: `${c.streams} concurrent byte-exact streams`,
      measured: `${c.byteExact} of ${c.streams}`,
      goal: `all ${c.streams}`,
      // And the agent itself must report them all open at once, when its metrics could be read.
      pass: c.byteExact === c.streams && c.failed === 0 && !(Number(c.agentActiveAtAll) < c.streams),
      load: c.streams / Math.max(1, c.byteExact),
    });
    out.push(atLeast('new streams per second (sustained)', c.newStreamsPerS, 200, '/s'));
  }
  const x64 = shippedX64(r);
  if (x64) {
    const who = x64.name.replace('single executable x64', 'x64 single executable');
    out.push(atMost(`${who}: idle RSS, ${r.config.memoryIdleSeconds} s after connecting`, mb(x64.idle.rss), 64, 'MB'));
    out.push(atMost(`${who}: idle anonymous memory`, mb(x64.idle.anon), 24, 'MB'));
    out.push(atMost(`${who}: RSS above idle, ${r.config.memoryIdleSeconds} s after 500 streams closed`, mb(x64.afterClose.rss - x64.idle.rss), 8, 'MB'));
  }
  if (r.memory) {
    out.push(atMost('agent (bundle) idle RSS, 3 s after connecting', mb(r.memory.agentIdleRss), 50, 'MB'));
    out.push(atMost('agent RSS growth, stalled reader', mb(r.memory.growthStalled), 16, 'MB'));
  }
  if (r.cpu) out.push(atMost('agent CPU per GiB ÷ socat single hop', r.cpu.agentSecPerGiB / r.cpu.socatHopSecPerGiB, 1.5, '×'));
  if (r.cpu?.executable) out.push(atMost('x64 single executable agent CPU per GiB ÷ socat single hop', r.cpu.executable.agentSecPerGiB / r.cpu.socatHopSecPerGiB, 1.5, '×'));
  return out;
}

/** Issue 16's figures before this work (x64, 5 s after connecting, medians of 3), shown beside ours. */
const BEFORE_ISSUE_16 = { bundleIdleMB: 92.6, seaIdleMB: 116.7, uploadRatio: 0.5, downloadRatio: 0.6 };

const f1 = (v: number): string => (Number.isFinite(v) ? (v >= 100 ? String(Math.round(v)) : v.toFixed(v >= 10 ? 1 : 2)) : 'n/a');

export function renderMarkdown(r: BenchResults, svgName: string): string {
  const lines: string[] = [];
  const row = (...cells: Array<string | number>): number => lines.push(`| ${cells.join(' | ')} |`);
  lines.push(`# devstreams benchmark, ${r.date.slice(0, 16).replace('T', ' ')} UTC${r.quick ? ' (quick run: rougher figures)' : ''}`, '');
  lines.push(
    `${r.machine.cpus} × ${r.machine.cpuModel}, Linux ${r.machine.kernel}, Node ${r.machine.node}. Load average before ${r.machine.loadBefore.join(' / ')}, after ${r.machine.loadAfter.join(' / ')}` +
      ` (other work on the machine shows here; ratios are measured within one run). Took ${r.durationS} s.` +
      (r.version ? ` Measured: ${r.version}.` : '') +
      (r.sections ? ` Sections: ${r.sections.join(', ')}.` : ''),
    '',
  );
  lines.push('## Targets', '');
  row('target', 'measured', 'goal', 'result');
  row('---', '---', '---', '---');
  for (const x of r.targets) row(x.name, x.measured, x.goal, x.pass ? 'pass' : '**MISS**');
  lines.push('', `![chart](${svgName})`, '');
  if (r.agentMemory) renderAgentMemory(r, row, lines);
  const t = r.throughput;
  if (t) {
    lines.push('## Throughput (iperf3, MB/s = 10^6 bytes/s; median of alternating rounds)', '');
    row('path', 'upload (service → device)', 'download (device → service)');
    row('---', '---:', '---:');
    row('iperf3 direct', t.upload.direct, t.download.direct);
    row('socat chain, 3 hops, 2 TLS legs', t.upload.socat, t.download.socat);
    row(`devstreams connect → hub → agent (bundle, Node ${r.machine.node})`, t.upload.tunnel, t.download.tunnel);
    const ratio = (d: 'upload' | 'download', path: 'tunnel' | 'executable' = 'tunnel'): string => {
      const m = medianRange(roundRatios(r, d, path));
      return `${f1(m.median)} (${f1(m.min)}–${f1(m.max)})`;
    };
    row('devstreams ÷ socat chain, median of per-round ratios (range)', ratio('upload'), ratio('download'));
    if (t.upload.executable !== undefined && t.download.executable !== undefined) {
      row(`devstreams, x64 single executables as shipped (${r.cpu?.executable?.runtime ?? '?'})`, t.upload.executable, t.download.executable);
      row('executables ÷ socat chain, median of per-round ratios (range)', ratio('upload', 'executable'), ratio('download', 'executable'));
    }
    row('before issue 16 (its figures)', `${BEFORE_ISSUE_16.uploadRatio}`, `${BEFORE_ISSUE_16.downloadRatio}`);
    if (r.throughputRuns) {
      const runs = r.throughputRuns;
      const exe = (d: 'upload' | 'download'): string => (runs[d].executable ? ` / ${runs[d].executable!.join(', ')}` : '');
      lines.push(
        '',
        `Rounds, socat / devstreams${runs.upload.executable ? ' / executables' : ''}: upload ${runs.upload.socat.join(', ')} / ${runs.upload.tunnel.join(', ')}${exe('upload')}; download ${runs.download.socat.join(', ')} / ${runs.download.tunnel.join(', ')}${exe('download')}.`,
      );
    }
    lines.push('');
  }
  if (r.rtt && r.setup) {
    lines.push('## Latency (ms)', '');
    row('path', `${r.pingBytes ?? 1}-byte round trip p50`, `${r.pingBytes ?? 1}-byte round trip p99`, 'setup p50', 'setup p99', `setup p50, ${r.config.setupParallel} at once`, `setup p99, ${r.config.setupParallel} at once`);
    row('---', '---:', '---:', '---:', '---:', '---:', '---:');
    for (const [name, k] of [
      ['direct', 'direct'],
      ['socat chain', 'socat'],
      ['devstreams', 'tunnel'],
    ] as const) {
      row(name, f1(r.rtt[k].p50), f1(r.rtt[k].p99), f1(r.setup.sequential[k].p50), f1(r.setup.sequential[k].p99), f1(r.setup.parallel[k].p50), f1(r.setup.parallel[k].p99));
    }
    lines.push('', 'Setup is the time from the TCP connect on the service side to the first echoed byte.', '');
  }
  const c = r.concurrency;
  const m = r.memory;
  if (c && m) {
    lines.push('## Concurrency and memory under load (the bundle agent; MB = 10^6 bytes)', '');
    row('figure', 'value');
    row('---', '---:');
    row(`streams open at once, each byte-exact (${r.config.concurrentPayloadBytes! / 1024} KiB echoed)`, `${c.byteExact} of ${c.streams} (${c.failed} failed, opened in ${c.openSeconds} s)`);
    if (c.agentActiveAtAll !== undefined) row('streams the agent reports open at that moment (its metrics)', String(c.agentActiveAtAll));
    row('agent RSS at 0 / 100 / all streams', `${mb(c.agentRss.at0)} / ${mb(c.agentRss.at100)} / ${mb(c.agentRss.atAll)} MB`);
    row('hub / connect RSS with all streams open', `${mb(c.hubRssAtAll)} / ${mb(c.connectRssAtAll)} MB`);
    row(`new streams per second (${r.config.rateConcurrency} in flight, ${r.config.rateSeconds} s)`, `${c.newStreamsPerS}/s (${c.rateErrors} errors; setup p50 ${f1(c.rateSetup.p50)} ms p99 ${f1(c.rateSetup.p99)} ms)`);
    row('agent idle RSS (connected 3 s, no stream yet)', `${mb(m.agentIdleRss)} MB`);
    row('an idle `node` process doing nothing (the floor)', `${mb(m.nodeFloorRss)} MB`);
    row('agent RSS idle again after all of the above', `${mb(m.agentRssAfterRun)} MB${m.agentActiveAfterRun !== undefined ? ` (${m.agentActiveAfterRun} streams open)` : ''}`);
    row(`agent RSS growth while a reader stalls ${r.config.stallSeconds} s and the device floods`, `${mb(m.growthStalled)} MB (peak ${mb(m.peakRssStalled)} MB)`);
    row('bytes the device got to write while the reader stalled', `${mb(m.writtenWhileStalled)} MB`);
    row('hub RSS growth while stalled', `${mb(m.hubGrowthStalled)} MB`);
    row(`then drained ${mb(m.floodBytes)} MB`, `${m.drained.exact ? 'byte-exact' : '**NOT byte-exact**'} at ${m.drained.mbPerS} MB/s, agent peak ${mb(m.peakRssDraining)} MB`);
    if (r.hostile) {
      const h = r.hostile;
      row(`hub RSS with ${h.connections} hostile unauthenticated connections at once (${h.holdSeconds} s; bench/hostile.ts)`, `+${mb(h.rssPeak - h.rssBefore)} MB at peak (${mb(h.rssBefore)} → ${mb(h.rssPeak)} MB), ${mb(h.rssAfter)} MB after; ${h.closedByHub} cut by the hub`);
    }
    lines.push('');
  }
  if (r.cpu) {
    lines.push('## CPU seconds per GiB relayed (both directions of the iperf3 runs)', '');
    row('hop', 'devstreams s/GiB', 'socat s/GiB', 'ratio');
    row('---', '---:', '---:', '---:');
    const hopRow = (name: string, ours: number, theirs: number | undefined): number => row(name, ours, theirs ?? 'n/a', theirs ? f1(ours / theirs) : 'n/a');
    hopRow('device side: agent (TLS in, TCP out)', r.cpu.agentSecPerGiB, r.cpu.socatHopSecPerGiB);
    hopRow('middle: hub (TLS in, TLS out)', r.cpu.hubSecPerGiB, r.cpu.socatHubHopSecPerGiB);
    hopRow('service side: connect (TCP in, TLS out)', r.cpu.connectSecPerGiB, r.cpu.socatConnectHopSecPerGiB);
    for (const [d, c] of Object.entries(r.cpu.byDirection ?? {})) {
      hopRow(`${d}: agent`, c.agent, c.socatHop);
      hopRow(`${d}: hub`, c.hub, c.socatHubHop);
      hopRow(`${d}: connect`, c.connect, c.socatConnectHop);
    }
    const e = r.cpu.executable;
    if (e) {
      hopRow(`x64 single executables (${e.runtime}): agent`, e.agentSecPerGiB, r.cpu.socatHopSecPerGiB);
      hopRow('x64 single executables: hub', e.hubSecPerGiB, r.cpu.socatHubHopSecPerGiB);
      hopRow('x64 single executables: connect', e.connectSecPerGiB, r.cpu.socatConnectHopSecPerGiB);
      for (const [d, c] of Object.entries(e.byDirection ?? {})) {
        hopRow(`executables ${d}: agent`, c.agent, c.socatHop);
        hopRow(`executables ${d}: hub`, c.hub, c.socatHubHop);
        hopRow(`executables ${d}: connect`, c.connect, c.socatConnectHop);
      }
    }
    lines.push('');
  }
  lines.push('## Footprint', '');
  row('file', 'size');
  row('---', '---:');
  row('dist/devstreams.cjs (bundle; needs Node ≥ 20)', `${mb(r.footprint.bundleBytes)} MB`);
  for (const [name, size] of Object.entries(r.footprint.executables)) row(`dist/${name}`, `${mb(size)} MB`);
  if (Object.keys(r.footprint.executables).length === 0) row('single executables', 'not built in this tree');
  const binaries = (r.footprint.packaging as { binaries?: Record<string, { file?: string; bytes?: number; node?: string }> } | undefined)?.binaries;
  if (binaries) {
    lines.push('', 'Single executables as the packaging build recorded them (bench/results/footprint.json):', '');
    row('arch', 'file', 'size', 'embedded Node');
    row('---', '---', '---:', '---');
    for (const [arch, b] of Object.entries(binaries)) row(arch, b.file ?? '?', b.bytes ? `${mb(b.bytes)} MB` : '?', b.node ?? '?');
  } else if (r.footprint.packaging !== undefined) {
    lines.push('', `From the packaging build (bench/results/footprint.json): \`${JSON.stringify(r.footprint.packaging).slice(0, 500)}\``);
  }
  lines.push('');
  return lines.join('\n');
}

function renderAgentMemory(r: BenchResults, row: (...cells: Array<string | number>) => number, lines: string[]): void {
  const idle = r.config.memoryIdleSeconds;
  lines.push(`## The agent's memory as shipped (MB = 10^6 bytes; RSS, anonymous part in brackets)`, '');
  lines.push(
    `Each agent is its own device on the same hub, idle ${idle} s after connecting, then holding 100 and 500 byte-exact ` +
      `streams (${r.config.concurrentPayloadBytes! / 1024} KiB echoed each), then idle again ${idle} s after they all closed. ` +
      `Per stream: (RSS at N − idle) ÷ N.` +
      (r.nodeFloorRss ? ` An idle \`node\` doing nothing: ${mb(r.nodeFloorRss)} MB.` : ''),
    '',
  );
  row('agent', `idle (${idle} s)`, '100 streams', '500 streams', 'per stream at 100 / 500', `${idle} s after closing`, 'after closing − idle', 'page cache');
  row('---', '---:', '---:', '---:', '---:', '---:', '---:', '---');
  const cell = (x: { rss: number; anon: number }): string => `${mb(x.rss)} (${mb(x.anon)})`;
  const signed = (v: number): string => `${v >= 0 ? '+' : '−'}${mb(Math.abs(v))}`;
  for (const a of r.agentMemory ?? []) {
    row(
      `${a.name}${a.note ? ` (${a.note})` : ''}${a.failedStreams ? `, ${a.failedStreams} streams failed` : ''}`,
      cell(a.idle),
      cell(a.at100),
      cell(a.at500),
      `${round(a.perStream100 / 1000, 1)} / ${round(a.perStream500 / 1000, 1)} kB`,
      cell(a.afterClose),
      `${signed(a.afterClose.rss - a.idle.rss)} (${signed(a.afterClose.anon - a.idle.anon)})`,
      a.pageCache,
    );
  }
  lines.push('', `Before issue 16 (its own figures, x64, 5 s after connecting): the bundle ${BEFORE_ISSUE_16.bundleIdleMB} MB, the x64 single executable (Node 24) ${BEFORE_ISSUE_16.seaIdleMB} MB.`, '');
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * A chart a person can read without tools: throughput bars by path, latency bars, and one bar per
 * target showing how much of its limit the measurement uses (the line at 100 % is the limit).
 */
export function renderSvg(r: BenchResults): string {
  const W = 960;
  const out: string[] = [];
  const font = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"';
  const text = (x: number, y: number, s: string, style: { size?: number; bold?: boolean } = {}): number =>
    out.push(`<text x="${x}" y="${y}" ${font} font-size="${style.size ?? 13}"${style.bold ? ' font-weight="bold"' : ''}>${esc(s)}</text>`);
  const rect = (x: number, y: number, w: number, h: number, fill: string): number =>
    out.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(0, w).toFixed(1)}" height="${h}" fill="${fill}"/>`);
  const colours = { direct: '#9e9e9e', socat: '#4f81bd', tunnel: '#f28e2b' };
  const names = { direct: 'direct', socat: 'socat TLS chain', tunnel: 'devstreams' };
  let y = 30;
  text(20, y, `devstreams benchmark ${r.date.slice(0, 16).replace('T', ' ')} UTC${r.quick ? ' (quick)' : ''}: ${r.machine.cpus} CPUs, load average ${r.machine.loadBefore[0]} at start`, { size: 16, bold: true });
  // Legend
  y += 22;
  let lx = 20;
  for (const k of ['direct', 'socat', 'tunnel'] as const) {
    rect(lx, y - 11, 14, 14, colours[k]);
    text(lx + 20, y, names[k]);
    lx += 170;
  }

  const barW = W - 380;
  // Panel 1: throughput
  const tp = r.throughput;
  if (tp) y += 30;
  if (tp) text(20, y, 'Throughput, MB/s (iperf3)', { bold: true });
  if (tp) y += 10;
  const maxT = tp ? Math.max(1, ...(['upload', 'download'] as const).flatMap((d) => Object.values(tp[d]))) : 1;
  for (const d of tp ? (['upload', 'download'] as const) : []) {
    for (const k of ['direct', 'socat', 'tunnel'] as const) {
      y += 20;
      const v = tp![d][k];
      if (k === 'direct') text(20, y + 12, d === 'upload' ? 'upload (service → device)' : 'download (device → service)');
      rect(220, y, (v / maxT) * barW, 16, colours[k]);
      text(226 + (v / maxT) * barW, y + 13, `${v} MB/s`);
    }
    y += 8;
  }

  // Panel 2: latency
  const lat: Array<[string, Paths<Dist>]> =
    r.rtt && r.setup
      ? [
          [`${r.pingBytes ?? 1}-byte round trip`, r.rtt],
          ['stream setup, one at a time', r.setup.sequential],
          [`stream setup, ${r.config.setupParallel} at once`, r.setup.parallel],
        ]
      : [];
  if (lat.length) {
    y += 30;
    text(20, y, 'Latency, ms (bar p50, whisker p99; each group on its own scale)', { bold: true });
    y += 10;
  }
  for (const [label, p] of lat) {
    // Each group on its own scale: a round trip is 1/10,000 of a burst of setups.
    const maxL = Math.max(0.001, ...[p.direct.p99, p.socat.p99, p.tunnel.p99].filter(Number.isFinite));
    for (const k of ['direct', 'socat', 'tunnel'] as const) {
      y += 20;
      if (k === 'direct') text(20, y + 12, label);
      const w50 = (p[k].p50 / maxL) * barW;
      const w99 = (p[k].p99 / maxL) * barW;
      rect(220, y, w50, 16, colours[k]);
      out.push(`<line x1="${220 + w50}" y1="${y + 8}" x2="${220 + w99}" y2="${y + 8}" stroke="#333" stroke-width="1.5"/>`);
      out.push(`<line x1="${220 + w99}" y1="${y + 2}" x2="${220 + w99}" y2="${y + 14}" stroke="#333" stroke-width="1.5"/>`);
      text(228 + w99, y + 13, `${f1(p[k].p50)} / ${f1(p[k].p99)}`);
    }
    y += 8;
  }

  // Panel 3: targets
  y += 30;
  text(20, y, 'Targets: share of the limit used (left of the line passes)', { bold: true });
  y += 10;
  const scale = 2; // the axis runs to 200 % of the limit
  const axisX = 380;
  const axisW = W - axisX - 200;
  for (const x of r.targets) {
    y += 22;
    text(20, y + 12, x.name.length > 44 ? `${x.name.slice(0, 43)}…` : x.name);
    const w = (Math.min(x.load, scale) / scale) * axisW;
    rect(axisX, y, w, 16, x.pass ? '#59a14f' : '#e15759');
    text(axisX + axisW + 10, y + 12, `${x.measured} (${x.goal})${x.pass ? '' : ' MISS'}`, { size: 12 });
  }
  const limitX = axisX + axisW / scale;
  out.push(`<line x1="${limitX}" y1="${y - r.targets.length * 22 + 14}" x2="${limitX}" y2="${y + 20}" stroke="#000" stroke-dasharray="4 3"/>`);
  text(limitX - 20, y + 34, 'limit', { size: 11 });
  y += 50;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}">`,
    `<rect width="${W}" height="${y}" fill="#fff"/>`,
    ...out,
    '</svg>',
    '',
  ].join('\n');
}
