import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { mqttLength, upgradeRequest, wsFrame } from '../test/helpers/hostile';
import { rssBytes, sleep } from './procs';

/**
 * Hub RSS while `count` hostile unauthenticated connections are open at once, each from its own
 * loopback address (so the per-address cap is not what limits them), four kinds in turn:
 * - a TLS handshake never finished (half a ClientHello),
 * - an HTTP request whose headers never end (15 KiB of them, under the 16 KiB limit),
 * - MQTT over WebSocket: a CONNECT announcing 256 MiB, then 1 MiB of it in 64 KiB frames,
 * - MQTT over WebSocket: one frame announcing 200 MiB, then 1 MiB of it.
 * docs/security.md publishes the figure; before the limits (issue 11) one connection of the last two
 * kinds held about 200 MiB.
 */
export interface HostileResult {
  connections: number;
  /** Connections the hub had closed when the hold ended (cut by a limit or a deadline). */
  closedByHub: number;
  holdSeconds: number;
  rssBefore: number;
  rssPeak: number;
  /** After every connection closed and 2 s passed. */
  rssAfter: number;
}

const MiB = 1024 * 1024;
const KINDS = ['tls-unfinished', 'headers-unfinished', 'mqtt-connect-256MiB', 'ws-frame-200MiB'] as const;

const UPGRADE = upgradeRequest('/$iothub/websocket', { 'sec-websocket-protocol': 'mqtt' });

function openHostile(port: number, kind: (typeof KINDS)[number], localAddress: string, onClosed: () => void): Socket {
  const junk = Buffer.alloc(MiB, 0x61);
  if (kind === 'tls-unfinished') {
    const s = netConnect({ port, host: '127.0.0.1', localAddress }, () => s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])));
    s.on('error', () => undefined).on('close', onClosed).resume();
    return s;
  }
  const s = tlsConnect({ port, host: '127.0.0.1', localAddress, rejectUnauthorized: false } as ConnectionOptions, () => {
    if (kind === 'headers-unfinished') s.write(`GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Pad: ${'a'.repeat(15 * 1024)}\r\n`);
    else if (kind === 'mqtt-connect-256MiB') {
      s.write(UPGRADE);
      // Frames each under the WebSocket limit: what stops this one is the MQTT length check.
      s.write(wsFrame(Buffer.concat([Buffer.from([0x10]), mqttLength(256 * MiB - 1)])));
      for (let at = 0; at < junk.length; at += 64 * 1024) s.write(wsFrame(junk.subarray(at, at + 64 * 1024)));
    } else {
      s.write(UPGRADE);
      s.write(wsFrame(Buffer.alloc(0), { announce: 200 * MiB }));
      s.write(junk);
    }
  });
  // Read what the hub says, so that its close (or reset) is seen.
  s.on('error', () => undefined).on('close', onClosed).resume();
  return s;
}

export async function measureHostile(o: { hubPid: number; port: number; count: number; holdSeconds: number }): Promise<HostileResult> {
  await sleep(1000);
  const rssBefore = rssBytes(o.hubPid);
  let closedByHub = 0;
  let holding = true;
  const sockets: Socket[] = [];
  for (let i = 0; i < o.count; i++) {
    const localAddress = `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
    sockets.push(openHostile(o.port, KINDS[i % KINDS.length]!, localAddress, () => holding && closedByHub++));
  }
  let rssPeak = rssBefore;
  const until = Date.now() + o.holdSeconds * 1000;
  while (Date.now() < until) {
    rssPeak = Math.max(rssPeak, rssBytes(o.hubPid));
    await sleep(100);
  }
  holding = false;
  for (const s of sockets) s.destroy();
  await sleep(2000);
  return { connections: o.count, closedByHub, holdSeconds: o.holdSeconds, rssBefore, rssPeak, rssAfter: rssBytes(o.hubPid) };
}
