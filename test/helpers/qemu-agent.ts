import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { decodeControl } from '../../wire';
import type { SpawnedProgram } from './packaging';
import { startStack, until, type Stack } from './stack';
import { random, roundTrip, sha256, startEchoServer } from './targets';

/**
 * An ARM agent (single executable, or a bundle on an ARM node) under qemu-user against an x64 hub on
 * this machine: it carries a TCP stream byte for byte and runs a shell in a PTY with the node-pty
 * addon it carries, written to `nativeDir`. Call inside a describe block.
 */
export function describeAgentUnderQemu(
  label: string,
  nativeDir: string,
  spawn: (args: string[], env: NodeJS.ProcessEnv) => SpawnedProgram,
  opts: { idleTrim?: boolean } = {},
): void {
  let stack: Stack;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let agent: SpawnedProgram;
  const device = `pi-${label}`;

  beforeAll(async () => {
    stack = await startStack();
    echo = await startEchoServer();
    const config = join(nativeDir, '..', `agent-${label}.yaml`);
    writeFileSync(
      config,
      [
        'hub:',
        `  connection_string: "${stack.deviceConnectionString(device)}"`,
        `  ca: ${stack.caFile}`,
        'services:',
        '  echo:',
        `    port: ${echo.port}`,
        '  shell:',
        '    pty:',
        '      command: /bin/sh',
        '',
      ].join('\n'),
    );
    // Debug logs say when the idle collection ran and whether malloc_trim's addon loaded.
    agent = spawn(['agent', '--config', config], { DEVSTREAMS_NATIVE_DIR: nativeDir, ...(opts.idleTrim ? { DEVSTREAMS_LOG_LEVEL: 'debug' } : {}) });
    // The state the tests need, as the agent says it (subscribed to its stream requests). Probing
    // with stream requests instead spent the device's request budget at the hub while qemu started
    // (20 ms apart for up to 90 s), and the tests' own requests then got 429.
    await until(() => agent.lines.some((l) => l.includes('listening for stream requests')), `the ${label} agent to listen`, 90_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message} (output: ${agent.lines.slice(-5).join(' | ')})`);
    });
  }, 120_000);
  afterAll(async () => {
    await agent?.stop();
    await stack?.stop();
    await echo?.close();
  });

  it('starts without a warning from Node (mqtt.js given a URL string read it with url.parse, DEP0169 on Node 24)', () => {
    expect(agent.lines.filter((l) => /Warning/.test(l) && !l.startsWith('{'))).toEqual([]);
  });

  it('carries a TCP stream byte for byte', async () => {
    const port = (await stack.connect(device, 'echo')).address.port;
    const payload = random(1_000_000);
    const back = await roundTrip(port, payload);
    expect(back.length).toBe(payload.length);
    expect(sha256(back)).toBe(sha256(payload));
  });

  it('runs a shell in a PTY, loading the addon it carries from DEVSTREAMS_NATIVE_DIR', async () => {
    const ws = await stack.client.openStream(await stack.client.requestStream(device, 'shell'));
    let out = '';
    let exit: Record<string, unknown> | undefined;
    ws.on('message', (data, isBinary) => {
      if (isBinary) out += (data as Buffer).toString('utf8');
      else exit = decodeControl(data.toString()) as Record<string, unknown> | undefined;
    });
    const closed = new Promise<void>((r) => ws.on('close', () => r()));
    ws.resume();
    // Arithmetic the shell does, so the echo of what we typed cannot pass for the answer.
    ws.send(Buffer.from('echo "tty=$(tty) sum=$((6*7))"\n'), { binary: true });
    await until(() => /sum=42/.test(out), `the shell's answer (got ${JSON.stringify(out.slice(-200))})`, 30_000);
    expect(out).toMatch(/tty=\/dev\/pts\/\d+/);
    ws.send(Buffer.from('exit 3\n'), { binary: true });
    await closed;
    expect(exit).toMatchObject({ type: 'exit', code: 3 });
    // Content-addressed, written once. (The idle collection may have written malloc_trim's beside it.)
    const files = readdirSync(nativeDir).filter((f) => f.startsWith('pty-'));
    expect(files).toEqual([expect.stringMatching(/^pty-[0-9a-f]{32}\.node$/)]);
  });

  if (opts.idleTrim) {
    it('once idle, collects garbage and trims malloc with the addon it carries, loaded on this node', async () => {
      const collected = (): string | undefined => agent.lines.find((l) => l.includes('no streams open: collected garbage'));
      await until(() => collected() !== undefined, 'the idle collection (10 s after the last stream)', 60_000);
      expect(agent.lines.filter((l) => l.includes('cannot load the malloc_trim addon'))).toEqual([]);
      // true or false (memory given back or none to give); undefined would mean no addon ran.
      expect(typeof (JSON.parse(collected()!) as { trimmed?: unknown }).trimmed).toBe('boolean');
      expect(readdirSync(nativeDir).filter((f) => f.startsWith('malloc-trim-'))).toEqual([expect.stringMatching(/^malloc-trim-[0-9a-f]{32}\.node$/)]);
    }, 90_000);
  }
}
