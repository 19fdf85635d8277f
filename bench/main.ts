/**
 * `make bench`: the real CLI processes (hub, agent, connect) over TLS on loopback, measured beside
 * iperf3 direct and a socat TLS chain in the same run, so ratios hold on a noisy machine. Writes
 * bench/results/<date>.json, .md and .svg and prints the Markdown summary.
 *
 * Usage: node dist/bench.cjs [--quick] [--out DIR] [--keep] [--only SECTION,...]
 *        node dist/bench.cjs render bench/results/DATE.json   (the .md and .svg again)
 *   --quick  shorter runs and fewer streams (a smoke run while working on it; figures are rougher)
 *   --keep   keep the temporary directory with every process's log
 *   --only   run only these sections: memory (the agent as shipped: idle, 100/500 streams, after),
 *            throughput (iperf3 and CPU per GiB beside socat), latency (round trip, stream setup),
 *            load (concurrent streams, new streams/s, stalled reader). Default: all.
 */
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runTargetsProcess } from './targets';
import { Proc, childPids, cpuSeconds, freePort, rssBytes, run, sleep, waitFor } from './procs';
import { startCliStack, startSocatChain, type CliStack, type SocatChain } from './stack';
import { PING_BYTES, closeAll, nowMs, openHeld, payload, pingPong, pool, setupOnce, startFlood, stalledReader, sustained } from './clients';
import { GiB, MB, dist, round, type Dist } from './stats';
import { evaluateTargets, renderMarkdown, renderSvg, type BenchResults } from './report';
import { measureAgentMemory, type AgentVariant } from './memory';
import { measureHostile } from './hostile';

const NODE = process.execPath;

const SECTIONS = ['memory', 'throughput', 'latency', 'load'] as const;
type Section = (typeof SECTIONS)[number];

interface Options {
  quick: boolean;
  keep: boolean;
  out: string;
  bundle: string;
  sections: Set<Section>;
}

function parseSections(text: string): Set<Section> {
  const names = text.split(',').map((x) => x.trim());
  const bad = names.filter((n) => !(SECTIONS as readonly string[]).includes(n));
  if (bad.length || names.length === 0) throw new Error(`--only takes sections from ${SECTIONS.join(', ')}, not "${text}"`);
  return new Set(names as Section[]);
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { quick: false, keep: false, out: resolve('bench/results'), bundle: resolve('dist/devstreams.cjs'), sections: new Set(SECTIONS) };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') opts.quick = true;
    else if (a === '--keep') opts.keep = true;
    else if (a === '--out') opts.out = resolve(argv[++i] ?? '');
    else if (a === '--bundle') opts.bundle = resolve(argv[++i] ?? '');
    else if (a === '--only') opts.sections = parseSections(argv[++i] ?? '');
    else throw new Error(`unknown option ${a} (use --quick, --keep, --out DIR, --bundle FILE, --only SECTION,...)`);
  }
  return opts;
}

function say(msg: string): void {
  process.stderr.write(`bench: ${msg}\n`);
}

interface IperfResult {
  mbPerS: number;
  bytes: number;
}

async function iperf(port: number, seconds: number, reverse: boolean): Promise<IperfResult> {
  // iperf3 -s serves one test at a time and may still be finishing the last one: retry while busy.
  for (let attempt = 0; ; attempt++) {
    try {
      return await iperfOnce(port, seconds, reverse);
    } catch (err) {
      if (attempt >= 30 || !/busy/.test((err as Error).message)) throw err;
      await sleep(500);
    }
  }
}

async function iperfOnce(port: number, seconds: number, reverse: boolean): Promise<IperfResult> {
  const out = await run('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-J', ...(reverse ? ['-R'] : [])], { timeoutMs: (seconds + 30) * 1000 });
  const j = JSON.parse(out) as { end?: { sum_received?: { bytes: number; seconds: number } }; error?: string };
  const r = j.end?.sum_received;
  if (!r || j.error) throw new Error(`iperf3: ${j.error ?? 'no result'}`);
  return { mbPerS: round(r.bytes / r.seconds / MB, 1), bytes: r.bytes };
}

/** CPU seconds several processes use while `fn` runs. */
async function measureCpu<T>(pids: Record<string, () => number>, fn: () => Promise<T>): Promise<{ result: T; cpu: Record<string, number> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, f]) => [k, f()]));
  const result = await fn();
  const cpu = Object.fromEntries(Object.entries(pids).map(([k, f]) => [k, f() - before[k]!]));
  return { result, cpu };
}

const mb = (bytes: number): number => round(bytes / MB, 1);

async function main(): Promise<void> {
  if (process.argv[2] === 'targets') return runTargetsProcess();
  if (process.argv[2] === 'render') return render(process.argv[3]);
  const opts = parseArgs(process.argv.slice(2));
  const started = nowMs();
  if (!existsSync(opts.bundle)) throw new Error(`${opts.bundle} is missing: run make build first`);
  for (const tool of ['iperf3', 'socat']) {
    await run('sh', ['-c', `command -v ${tool}`]).catch(() => {
      throw new Error(`${tool} is not installed (Debian: apt-get install ${tool}; or make system-deps)`);
    });
  }
  const Q = opts.quick;
  const cfg = {
    iperfSeconds: Number(process.env.BENCH_IPERF_SECONDS) || (Q ? 2 : 3),
    iperfRounds: Number(process.env.BENCH_ROUNDS) || (Q ? 1 : 3),
    pings: Q ? 300 : 2000,
    setupSequential: Q ? 50 : 300,
    // connect sets up 16 streams at once and queues 64 (service/connect.ts): more are reset by design.
    setupParallel: 64,
    setupParallelRounds: Q ? 1 : 3,
    concurrent: Q ? 300 : 1000,
    concurrentPayloadBytes: 16 * 1024,
    rateSeconds: Q ? 4 : 10,
    rateConcurrency: 32,
    floodBytes: Q ? 256 * 1024 * 1024 : GiB,
    stallSeconds: Q ? 3 : 6,
    memoryIdleSeconds: Number(process.env.BENCH_MEMORY_IDLE_SECONDS) || (Q ? 10 : 60),
    hostileConnections: 200,
    // Past the hub's 10 s deadlines, so what they cut shows.
    hostileHoldSeconds: Q ? 4 : 12,
  };
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-bench-'));
  say(`working in ${dir}${Q ? ' (quick)' : ''}`);
  const loadBefore = loadavg();
  const cleanups: Array<() => Promise<unknown>> = [];
  let stack: CliStack | undefined;
  const stopAll = async (): Promise<void> => {
    await stack?.stop().catch(() => undefined);
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    cleanups.length = 0;
  };
  // Ctrl-C must not leave a hub, an agent and socat processes behind.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      say(`${signal}: stopping what the benchmark started`);
      void stopAll().finally(() => process.exit(130));
    });
  }
  try {
    // Device-side targets: an echo server in its own process (so timing clients do not share its
    // event loop), iperf3's server, and a flood source here (only RSS is sampled while it runs).
    const targets = new Proc('targets', NODE, [process.argv[1]!, 'targets'], { logFile: join(dir, 'targets.log') });
    cleanups.push(() => targets.stop());
    const echoPort = Number((await targets.line(/^echo (\d+)/))[1]);
    const iperfPort = await freePort();
    const iperfServer = new Proc('iperf3 -s', 'iperf3', ['-s', '-p', String(iperfPort), '-B', '127.0.0.1'], { logFile: join(dir, 'iperf3.log') });
    cleanups.push(() => iperfServer.stop());
    const block = payload(64 * 1024);
    const flood = await startFlood(cfg.floodBytes, block);
    cleanups.push(() => flood.close());

    stack = await startCliStack({ dir, bundle: opts.bundle, services: { echo: echoPort, iperf: iperfPort, flood: flood.port } });
    const agentPid = stack.agent.pid;
    await waitFor(() => readFileSync(join(dir, 'agent.log'), 'utf8').includes('listening for stream requests'), 'the agent to connect', 60_000, 50);
    const [echoC, iperfC, floodC] = [await stack.connect('echo'), await stack.connect('iperf'), await stack.connect('flood')];
    await waitFor(() => iperfServer.lines.some((l) => l.includes('Server listening')), 'iperf3 -s', 10_000).catch(() => sleep(500));

    const has = (section: Section): boolean => opts.sections.has(section);
    // The bench-pi agent connected and idle 3 s, before any section puts a stream through it.
    await sleep(3000);
    const idleRss = rssBytes(agentPid);
    say(`agent idle RSS ${mb(idleRss)} MB`);
    const hubPid = stack.hub.pid;
    const results: BenchResults = {
      date: new Date().toISOString(),
      quick: Q,
      sections: [...opts.sections],
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '?', kernel: release(), node: process.version, loadBefore: loadBefore.map((v) => round(v, 2)), loadAfter: [] },
      config: cfg,
      footprint: { bundleBytes: 0, executables: {} },
      durationS: 0,
      targets: [],
    };

    // ---- the agent's memory as shipped: bundle and single executables ----
    if (has('memory')) {
      results.agentMemory = await measureAgentMemory(stack, agentVariants(opts.bundle), { idleSeconds: cfg.memoryIdleSeconds, afterCloseSeconds: cfg.memoryIdleSeconds, streams: [100, 500], payloadBytes: cfg.concurrentPayloadBytes }, say);
      results.nodeFloorRss = await idleNodeRss(dir);
    }

    const dataDir = join(dir, 'hub');
    const socatIperf: SocatChain = await startSocatChain({ dir, dataDir, target: iperfPort, name: 'iperf' });
    cleanups.push(() => socatIperf.stop());
    const socatEcho: SocatChain = await startSocatChain({ dir, dataDir, target: echoPort, name: 'echo' });
    cleanups.push(() => socatEcho.stop());

    if (has('throughput')) {
      // ---- throughput and CPU ----
      // socat's `fork` children do the work; their CPU counts in the parent once it has reaped them.
      // procs[0] is the agent's hop (TLS in, TCP out), [1] the hub's, [2] connect's.
      const socatHopsCpu = async (): Promise<number[]> => {
        for (const p of socatIperf.procs) await waitFor(() => childPids(p.pid).length === 0, 'socat children to exit', 10_000);
        return socatIperf.procs.map((p) => cpuSeconds(p.pid, { children: true }));
      };
      // Our paths: the bundle on this machine's Node, and the x64 single executables as shipped (hub,
      // agent with the systemd unit's environment, connect), when built.
      interface OurPath {
        key: 'tunnel' | 'executable';
        port: number;
        pids: { agent: number; hub: number; connect: number };
      }
      const ours: OurPath[] = [{ key: 'tunnel', port: iperfC.port, pids: { agent: agentPid, hub: hubPid, connect: iperfC.proc.pid } }];
      const exeStack = await startExecutableStack(opts.bundle, join(dir, 'executable'), iperfPort);
      if (exeStack) {
        cleanups.push(() => exeStack.stack.stop());
        ours.push({ key: 'executable', port: exeStack.port, pids: { agent: exeStack.stack.agent.pid, hub: exeStack.stack.hub.pid, connect: exeStack.connectPid } });
        say(`throughput also through the x64 single executables as shipped (${exeStack.version})`);
      }
      type Tally = { cpu: { agent: number; hub: number; connect: number }; bytes: number };
      const newTally = (): Tally => ({ cpu: { agent: 0, hub: 0, connect: 0 }, bytes: 0 });
      const socatTally = { upload: { cpu: [0, 0, 0], bytes: 0 }, download: { cpu: [0, 0, 0], bytes: 0 } };
      const tallies = { tunnel: { upload: newTally(), download: newTally() }, executable: { upload: newTally(), download: newTally() } };
      const throughput: BenchResults['throughput'] = { upload: { direct: 0, socat: 0, tunnel: 0 }, download: { direct: 0, socat: 0, tunnel: 0 } };
      const throughputRuns: BenchResults['throughputRuns'] = { upload: { socat: [], tunnel: [] }, download: { socat: [], tunnel: [] } };
      // Warm-up, not measured: the daemons' code is compiled as it runs (JIT); socat's is not.
      for (const reverse of [false, true]) {
        for (const o of ours) await iperf(o.port, 1, reverse);
        await iperf(socatIperf.port, 1, reverse);
      }
      // Alternating rounds, median per path: a burst of other work on the machine hits every path.
      const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      for (const direction of ['upload', 'download'] as const) {
        const reverse = direction === 'download';
        say(`throughput ${direction} (service → device is upload), ${cfg.iperfRounds} rounds of ${cfg.iperfSeconds} s`);
        throughput[direction].direct = (await iperf(iperfPort, cfg.iperfSeconds, reverse)).mbPerS;
        const runs: Record<'socat' | OurPath['key'], number[]> = { socat: [], tunnel: [], executable: [] };
        const viaSocat = async (): Promise<void> => {
          const s0 = await socatHopsCpu();
          const r = await iperf(socatIperf.port, cfg.iperfSeconds, reverse);
          const s1 = await socatHopsCpu();
          s1.forEach((v, i) => (socatTally[direction].cpu[i]! += v - s0[i]!));
          socatTally[direction].bytes += r.bytes;
          runs.socat.push(r.mbPerS);
        };
        const viaOurs = (o: OurPath) => async (): Promise<void> => {
          const t = await measureCpu({ agent: () => cpuSeconds(o.pids.agent), hub: () => cpuSeconds(o.pids.hub), connect: () => cpuSeconds(o.pids.connect) }, () =>
            iperf(o.port, cfg.iperfSeconds, reverse),
          );
          runs[o.key].push(t.result.mbPerS);
          const tally = tallies[o.key][direction];
          tally.bytes += t.result.bytes;
          for (const k of Object.keys(tally.cpu) as Array<keyof Tally['cpu']>) tally.cpu[k] += t.cpu[k]!;
        };
        // Every path once a round, the order rotated each round, so no path always runs first or last.
        const paths = [viaSocat, ...ours.map(viaOurs)];
        for (let round = 0; round < cfg.iperfRounds; round++) {
          for (let i = 0; i < paths.length; i++) await paths[(i + round) % paths.length]!();
        }
        throughput[direction].socat = median(runs.socat);
        throughput[direction].tunnel = median(runs.tunnel);
        throughputRuns[direction] = { socat: runs.socat, tunnel: runs.tunnel };
        if (runs.executable.length) {
          throughput[direction].executable = median(runs.executable);
          throughputRuns[direction].executable = runs.executable;
        }
        say(`  direct ${throughput[direction].direct} MB/s, socat chain ${runs.socat.join(' / ')} MB/s, devstreams ${runs.tunnel.join(' / ')} MB/s${runs.executable.length ? `, executables ${runs.executable.join(' / ')} MB/s` : ''}`);
      }
      const perGiB = (sec: number, bytes: number): number => round(sec / (bytes / GiB), 2);
      const both = (f: (d: 'upload' | 'download') => [number, number]): number => {
        const [u, d] = [f('upload'), f('download')];
        return perGiB(u[0] + d[0], u[1] + d[1]);
      };
      const socatHop = (i: number): number => both((d) => [socatTally[d].cpu[i]!, socatTally[d].bytes]);
      const ourCpu = (key: OurPath['key']): CpuFigures => ({
        agentSecPerGiB: both((d) => [tallies[key][d].cpu.agent, tallies[key][d].bytes]),
        hubSecPerGiB: both((d) => [tallies[key][d].cpu.hub, tallies[key][d].bytes]),
        connectSecPerGiB: both((d) => [tallies[key][d].cpu.connect, tallies[key][d].bytes]),
        byDirection: Object.fromEntries(
          (['upload', 'download'] as const).map((d) => {
            const t = tallies[key][d];
            const so = socatTally[d];
            const fig = { agent: perGiB(t.cpu.agent, t.bytes), hub: perGiB(t.cpu.hub, t.bytes), connect: perGiB(t.cpu.connect, t.bytes) };
            const socat = { socatHop: perGiB(so.cpu[0]!, so.bytes), socatHubHop: perGiB(so.cpu[1]!, so.bytes), socatConnectHop: perGiB(so.cpu[2]!, so.bytes) };
            return [d, { ...fig, ...socat }];
          }),
        ) as CpuFigures['byDirection'],
      });
      const cpu: BenchResults['cpu'] = {
        ...ourCpu('tunnel'),
        socatHopSecPerGiB: socatHop(0),
        socatHubHopSecPerGiB: socatHop(1),
        socatConnectHopSecPerGiB: socatHop(2),
        tunnelGiB: round((tallies.tunnel.upload.bytes + tallies.tunnel.download.bytes) / GiB, 2),
        socatGiB: round((socatTally.upload.bytes + socatTally.download.bytes) / GiB, 2),
        ...(exeStack ? { executable: { ...ourCpu('executable'), runtime: exeStack.version } } : {}),
      };
      say(`CPU per GiB: agent ${cpu.agentSecPerGiB} s, socat hop ${cpu.socatHopSecPerGiB} s`);
      for (const [name, c] of [['bundle', cpu], ['executables', cpu.executable]] as const) {
        for (const [d, f] of Object.entries(c?.byDirection ?? {})) {
          say(`  ${name} ${d}: agent ${f.agent} hub ${f.hub} connect ${f.connect} s/GiB; socat hops ${f.socatHop} / ${f.socatHubHop} / ${f.socatConnectHop}`);
        }
      }
      Object.assign(results, { throughput, throughputRuns, cpu });
      // Idle executables must not share the machine with the sections after this one.
      await exeStack?.stack.stop();
    }
    if (has('latency')) {
      // ---- round trip ----
      say(`round trip (${PING_BYTES}-byte ping-pong)`);
      const rtt = {
        direct: dist(await pingPong(echoPort, cfg.pings)),
        socat: dist(await pingPong(socatEcho.port, cfg.pings)),
        tunnel: dist(await pingPong(echoC.port, cfg.pings)),
      };

      // ---- stream setup ----
      say('stream setup (TCP connect → first echoed byte)');
      const sequential = async (port: number): Promise<Dist> => {
        const r = await pool(cfg.setupSequential, 1, () => setupOnce(port));
        if (r.errors.length) throw new Error(`setup: ${r.errors.length} failed: ${r.errors[0]}`);
        return dist(r.ok);
      };
      const parallel = async (port: number): Promise<{ dist: Dist; errors: number }> => {
        const all: number[] = [];
        let errors = 0;
        for (let round = 0; round < cfg.setupParallelRounds; round++) {
          const r = await pool(cfg.setupParallel, cfg.setupParallel, () => setupOnce(port));
          all.push(...r.ok);
          errors += r.errors.length;
        }
        return { dist: dist(all), errors };
      };
      const seqDirect = await sequential(echoPort);
      const seqSocat = await sequential(socatEcho.port);
      const seqTunnel = await sequential(echoC.port);
      const parDirect = await parallel(echoPort);
      const parSocat = await parallel(socatEcho.port);
      const parTunnel = await parallel(echoC.port);
      const setup: BenchResults['setup'] = {
        sequential: { direct: seqDirect, socat: seqSocat, tunnel: seqTunnel },
        parallel: { direct: parDirect.dist, socat: parSocat.dist, tunnel: parTunnel.dist },
        parallelErrors: parTunnel.errors + parSocat.errors,
      };
      say(`  one at a time p50 ${setup.sequential.tunnel.p50} ms p99 ${setup.sequential.tunnel.p99} ms; ${cfg.setupParallel} at once p50 ${setup.parallel.tunnel.p50} ms p99 ${setup.parallel.tunnel.p99} ms`);
      Object.assign(results, { rtt, pingBytes: PING_BYTES, setup });

    }
    if (has('load')) {
      const nodeFloorRss = results.nodeFloorRss ?? (await idleNodeRss(dir));
      say(`an idle node process: ${mb(nodeFloorRss)} MB`);

      // ---- concurrency ----
      say(`${cfg.concurrent} concurrent byte-exact streams`);
      await sleep(1000);
      const rss0 = rssBytes(agentPid);
      const first = Math.min(100, cfg.concurrent);
      const held: import('node:net').Socket[] = [];
      const openBatch = async (n: number): Promise<number> => (await openHeld(echoC.port, n, payload(cfg.concurrentPayloadBytes), held)).failed;
      const tOpen = nowMs();
      let concurrentFailed = await openBatch(first);
      const rss100 = rssBytes(agentPid);
      concurrentFailed += await openBatch(cfg.concurrent - first);
      const openSeconds = (nowMs() - tOpen) / 1000;
      await sleep(500);
      const rss1000 = rssBytes(agentPid);
      const agentActiveAtAll = await stack.agentMetric('devstreams_streams_active');
      const hubRss1000 = rssBytes(hubPid);
      const connectRss1000 = rssBytes(echoC.proc.pid);
      await closeAll(held);
      say(`  ${held.length} byte-exact, ${concurrentFailed} failed; agent RSS ${mb(rss0)} / ${mb(rss100)} / ${mb(rss1000)} MB`);

      say(`new streams per second, ${cfg.rateConcurrency} in flight for ${cfg.rateSeconds} s`);
      const rate = await sustained(echoC.port, cfg.rateConcurrency, cfg.rateSeconds * 1000);
      say(`  ${round(rate.completed / rate.seconds, 1)} streams/s, ${rate.errors.length} errors`);

      // ---- memory under a stalled reader ----
      say(`stalled reader while the device floods ${mb(cfg.floodBytes)} MB`);
      await sleep(1000);
      const rssBeforeFlood = rssBytes(agentPid);
      const reader = await stalledReader(floodC.port, block);
      let peakStalled = rssBeforeFlood;
      const hubBefore = rssBytes(hubPid);
      let hubPeak = hubBefore;
      const stallEnd = nowMs() + cfg.stallSeconds * 1000;
      while (nowMs() < stallEnd) {
        peakStalled = Math.max(peakStalled, rssBytes(agentPid));
        hubPeak = Math.max(hubPeak, rssBytes(hubPid));
        await sleep(100);
      }
      const writtenWhileStalled = flood.written();
      let peakDraining = 0;
      const sampler = setInterval(() => (peakDraining = Math.max(peakDraining, rssBytes(agentPid))), 100);
      const drained = await reader.drain();
      clearInterval(sampler);
      say(`  agent RSS +${mb(peakStalled - rssBeforeFlood)} MB while stalled; drained ${mb(drained.bytes)} MB at ${round(drained.bytes / drained.seconds / MB, 1)} MB/s`);

      await sleep(2000);
      const rssAfterRun = rssBytes(agentPid);
      const agentActiveAfterRun = await stack.agentMetric('devstreams_streams_active');

      // ---- hostile unauthenticated connections (bench/hostile.ts, docs/security.md) ----
      say(`${cfg.hostileConnections} hostile unauthenticated connections at once, held ${cfg.hostileHoldSeconds} s`);
      const hubPort = Number(/:(\d+)\s/.exec(stack.hub.lines.find((l) => l.startsWith('hub listening on ')) ?? '')?.[1]);
      const hostile = await measureHostile({ hubPid, port: hubPort, count: cfg.hostileConnections, holdSeconds: cfg.hostileHoldSeconds });
      say(`  hub RSS ${mb(hostile.rssBefore)} → peak ${mb(hostile.rssPeak)} → after ${mb(hostile.rssAfter)} MB; ${hostile.closedByHub} cut by the hub`);
      results.hostile = hostile;
      results.concurrency = {
        streams: cfg.concurrent,
        byteExact: held.length,
        failed: concurrentFailed,
        openSeconds: round(openSeconds, 2),
        agentRss: { at0: rss0, at100: rss100, atAll: rss1000 },
        agentActiveAtAll,
        hubRssAtAll: hubRss1000,
        connectRssAtAll: connectRss1000,
        newStreamsPerS: round(rate.completed / rate.seconds, 1),
        rateErrors: rate.errors.length,
        rateSetup: dist(rate.setupMs),
      };
      results.memory = {
        agentIdleRss: idleRss,
        nodeFloorRss,
        agentRssAfterRun: rssAfterRun,
        agentActiveAfterRun,
        floodBytes: cfg.floodBytes,
        stallSeconds: cfg.stallSeconds,
        rssBeforeFlood,
        peakRssStalled: peakStalled,
        growthStalled: peakStalled - rssBeforeFlood,
        hubGrowthStalled: hubPeak - hubBefore,
        writtenWhileStalled,
        peakRssDraining: peakDraining,
        drained: { bytes: drained.bytes, exact: drained.exact && drained.bytes === cfg.floodBytes, mbPerS: round(drained.bytes / drained.seconds / MB, 1) },
      };

    }

    // ---- footprint ----
    const footprint: BenchResults['footprint'] = { bundleBytes: statSync(opts.bundle).size, executables: {} };
    results.footprint = footprint;
    const distDir = join(opts.bundle, '..');
    // What `make binary` ships: not the armv7 executable, built on request only (its Node is end of
    // life, docs/packaging.md), which a packaging test run may have left in dist/.
    for (const f of readdirSync(distDir)) if (/^devstreams-linux-/.test(f) && f !== 'devstreams-linux-armv7') footprint.executables[f] = statSync(join(distDir, f)).size;
    const packagingFile = join(opts.out, 'footprint.json');
    if (existsSync(packagingFile)) {
      try {
        footprint.packaging = JSON.parse(readFileSync(packagingFile, 'utf8')) as unknown;
      } catch {
        footprint.packaging = 'bench/results/footprint.json is not valid JSON';
      }
    }

    results.machine.loadAfter = loadavg().map((v) => round(v, 2));
    results.version = (await run(NODE, [opts.bundle, '--version']).catch(() => '?')).trim();
    results.durationS = round((nowMs() - started) / 1000, 1);
    results.targets = evaluateTargets(results);

    mkdirSync(opts.out, { recursive: true });
    const stem = join(opts.out, Q ? `${results.date.slice(0, 10)}-quick` : results.date.slice(0, 10));
    const md = renderMarkdown(results, `${stem.split('/').pop()}.svg`);
    writeFileSync(`${stem}.json`, JSON.stringify(results, null, 2) + '\n');
    writeFileSync(`${stem}.md`, md);
    writeFileSync(`${stem}.svg`, renderSvg(results));
    process.stdout.write(md);
    process.stdout.write(`\nwrote ${stem}.json, .md and .svg in ${results.durationS} s\n`);
  } finally {
    await stopAll();
    if (opts.keep) say(`logs kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/** `node dist/bench.cjs render RESULTS.json`: writes the .md and .svg again from a results file. */
function render(file: string | undefined): void {
  if (!file) throw new Error('usage: node dist/bench.cjs render bench/results/DATE.json');
  const results = JSON.parse(readFileSync(file, 'utf8')) as BenchResults;
  results.targets = evaluateTargets(results);
  const stem = file.replace(/\.json$/, '');
  const md = renderMarkdown(results, `${stem.split('/').pop()}.svg`);
  writeFileSync(`${stem}.md`, md);
  writeFileSync(`${stem}.svg`, renderSvg(results));
  process.stdout.write(md);
}

/**
 * The agent as people run it: the bundle on this machine's node, and the single executables as
 * shipped (dist/devstreams-linux-*): this machine's natively, arm64 under qemu-user (labelled: qemu's
 * translator and its code cache are in that RSS, so it is not a Pi's figure).
 */
function agentVariants(bundle: string): AgentVariant[] {
  const dist = join(bundle, '..');
  const native = process.arch === 'x64' ? 'x64' : process.arch === 'arm64' ? 'arm64' : undefined;
  const variants: AgentVariant[] = [
    {
      name: `bundle on node ${process.version}`,
      command: NODE,
      args: [bundle],
      note: "dist/devstreams.cjs: no malloc_trim addon (the executables and the armhf package's bundle carry one) and not the unit's environment, so it keeps what it freed after streams",
    },
  ];
  if (native) variants.push({ name: `single executable ${native}`, command: join(dist, `devstreams-linux-${native}`), args: [], file: join(dist, `devstreams-linux-${native}`) });
  // As the packages run it: with the systemd unit's Environment= settings.
  const unitEnv = unitEnvironment(join(dist, '..', 'config/devstreams-agent.service'));
  if (native && Object.keys(unitEnv).length) {
    const file = join(dist, `devstreams-linux-${native}`);
    variants.push({ name: `single executable ${native} with the unit's environment`, command: file, args: [], file, env: unitEnv, note: envText(unitEnv) });
    // A/B: the same without the agent's own lever (agent/v8-tiering.ts leaves TurboFan out unless
    // this variable says to keep it; the benchmark never imports the product's code).
    const keep = { ...unitEnv, DEVSTREAMS_AGENT_TURBOFAN: '1' };
    variants.push({ name: `single executable ${native}, the unit's environment, TurboFan kept (A/B)`, command: file, args: [], file, env: keep, note: envText(keep) });
  }
  // BENCH_AGENT_ENV="K=V K=V": one more variant, the native executable with that environment (a lever
  // being measured before it goes into the unit).
  const extra = process.env.BENCH_AGENT_ENV?.trim();
  if (native && extra) {
    const env = Object.fromEntries(extra.split(/\s+/).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    const file = join(dist, `devstreams-linux-${native}`);
    variants.push({ name: `single executable ${native} with ${extra}`, command: file, args: [], file, env });
  }
  if (native === 'x64') {
    const file = join(dist, 'devstreams-linux-arm64');
    variants.push({ name: 'single executable arm64, under qemu-aarch64', command: 'qemu-aarch64', args: ['-L', '/usr/aarch64-linux-gnu', file], file, note: "qemu-user's own memory (translator, translated code) is included: not a Pi's figure" });
  }
  return variants;
}

type CpuFigures = Pick<NonNullable<BenchResults['cpu']>, 'agentSecPerGiB' | 'hubSecPerGiB' | 'connectSecPerGiB' | 'byDirection'>;

/**
 * Hub, agent and connect run by the x64 single executable as shipped (the agent with the systemd
 * unit's environment) for the iperf3 service; undefined when it is not built or this is not x64.
 */
async function startExecutableStack(bundle: string, dir: string, iperfPort: number): Promise<{ stack: CliStack; port: number; connectPid: number; version: string } | undefined> {
  const file = join(bundle, '..', 'devstreams-linux-x64');
  if (process.arch !== 'x64' || !existsSync(file)) return undefined;
  mkdirSync(dir, { recursive: true });
  const agentEnv = unitEnvironment(join(bundle, '..', '..', 'config/devstreams-agent.service'));
  const stack = await startCliStack({ dir, bundle, services: { iperf: iperfPort }, executable: file, agentEnv });
  try {
    await waitFor(() => readFileSync(join(dir, 'agent.log'), 'utf8').includes('listening for stream requests'), 'the executable agent to connect', 60_000, 50);
    const c = await stack.connect('iperf');
    const version = (await run(file, ['--version'], { timeoutMs: 30_000 })).trim().split('\n').join(', ');
    return { stack, port: c.port, connectPid: c.proc.pid, version };
  } catch (err) {
    await stack.stop();
    throw err;
  }
}

/** `Environment=K=V` lines of a systemd unit (one assignment per line, as ours are written). */
function unitEnvironment(file: string): Record<string, string> {
  if (!existsSync(file)) return {};
  const env: Record<string, string> = {};
  for (const m of readFileSync(file, 'utf8').matchAll(/^Environment=([A-Za-z_][A-Za-z0-9_]*)=(.*)$/gm)) env[m[1]!] = m[2]!.trim();
  return env;
}

const envText = (env: Record<string, string>): string => Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ');

/** RSS of a node process doing nothing: the floor under any Node daemon. */
async function idleNodeRss(dir: string): Promise<number> {
  const p = new Proc('idle node', NODE, ['-e', 'setInterval(() => {}, 1000); console.log("up")'], { logFile: join(dir, 'idle-node.log') });
  try {
    await p.line(/^up/);
    await sleep(1000);
    return rssBytes(p.pid);
  } finally {
    await p.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
