import { mqttLength, upgradeRequest, wsFrame } from './hostile';

/**
 * Generators of malformed input for the hub's surfaces (test/hostile-fuzz.test.ts). A surface is one
 * table entry: how many connections to open and what to send on each. Everything is drawn from a
 * seeded generator, so a failure is reproduced by running again with HOSTILE_SEED=<seed>.
 */

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function seededRandom(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    next,
    int,
    pick: <T>(items: readonly T[]): T => items[int(items.length)]!,
    chance: (p: number): boolean => next() < p,
    bytes: (n: number): Buffer => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
    text: (n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789-._~%/?#[]@!$&\'()*+,;=:'): string => {
      let s = '';
      for (let i = 0; i < n; i++) s += alphabet[int(alphabet.length)];
      return s;
    },
  };
}

export interface Rng {
  next: () => number;
  int: (n: number) => number;
  pick: <T>(items: readonly T[]) => T;
  chance: (p: number) => boolean;
  bytes: (n: number) => Buffer;
  text: (n: number, alphabet?: string) => string;
}

/** What a generator knows about the hub under test. */
export interface HubUnderTest {
  /** Device ids registered for the fuzz, with a valid MQTT CONNECT for each. */
  deviceConnects: Buffer[];
  host: string;
}

/** One connection's worth of hostile input. */
export interface HostileInput {
  /** `https`: the hub's HTTPS port; `mqtt`: its MQTT/TLS port. */
  port: 'https' | 'mqtt';
  /** false: plain TCP to the TLS port (TLS garbage). */
  tls: boolean;
  chunks: Buffer[];
  /** Malformed inputs in `chunks` (pipelined requests count one each). */
  inputs: number;
}

export interface Surface {
  name: string;
  /** Connections to open. */
  connections: number;
  generate: (rng: Rng, hub: HubUnderTest) => HostileInput;
}

// ---------------------------------------------------------------------------------------------
// HTTP: request lines, paths, headers, bodies.

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT', 'get', 'PRI', 'M-SEARCH', 'X'.repeat(300), ''];
const VERSIONS = ['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x', 'HTTP/9', '', 'http/1.1'];

function hostilePath(rng: Rng): string {
  const base = rng.pick([
    '/',
    '//',
    '///x',
    '//evil.example/healthz',
    '/healthz',
    '/devices',
    '/twins/',
    '/twins/d/streams/',
    '/twins/%zz/streams/ssh',
    '/twins/d/streams/%',
    '/twins/d/streams/%E0%A4%A',
    '/twins/__proto__/streams/constructor',
    '/twins/d/modules/m/streams/s',
    '/twins/d/streams/a%23b',
    '/twins/d/streams/%2B',
    '/twins/d/streams/..%2F..',
    '/bridges/%zz',
    '/bridges/',
    '/$iothub/websocket',
    '*',
    'http://hub/healthz',
    '/%00',
    '/\u00e9\u00e8',
    `/${'a'.repeat(rng.int(9000))}`,
    `/twins/${rng.text(rng.int(300))}/streams/${rng.text(rng.int(80))}`,
  ]);
  return rng.chance(0.3) ? `${base}?${rng.text(rng.int(200))}` : base;
}

const HEADER_NAMES = ['Host', 'Content-Length', 'Transfer-Encoding', 'Authorization', 'Connection', 'Expect', 'Upgrade', 'iothub-streaming-connect-timeout-in-seconds', 'iothub-streaming-response-timeout-in-seconds', 'X-Pad', '', ' Space', 'Bad\x01Name'];

function hostileHeaderValue(rng: Rng, name: string): string {
  switch (name) {
    case 'Content-Length':
      return rng.pick(['-1', '99999999999999999999', '0', '10', 'abc', '5, 6', String(rng.int(100_000))]);
    case 'Transfer-Encoding':
      return rng.pick(['chunked', 'gzip, chunked', 'identity', 'chunked, chunked', 'xchunked']);
    case 'Authorization':
      return rng.pick([
        'SharedAccessSignature sr=x&sig=y&se=999999999999&skn=service',
        'SharedAccessSignature ' + rng.text(rng.int(500)),
        'SharedAccessSignature sr=%zz&sig=%zz&se=NaN&skn=__proto__',
        'Bearer ' + rng.text(100),
        'Basic Zm9vOmJhcg==',
        '',
      ]);
    case 'X-Pad':
      return 'a'.repeat(rng.pick([10, 1000, 17_000]));
    default:
      return rng.chance(0.2) ? rng.bytes(rng.int(40)).toString('latin1') : rng.text(rng.int(60));
  }
}

function hostileBody(rng: Rng, chunked: boolean): Buffer {
  if (!chunked) return rng.bytes(rng.pick([0, 0, 10, 1000, 5000, 9000]));
  return Buffer.from(
    rng.pick([
      '5\r\nhello\r\n0\r\n\r\n',
      'zz\r\nxx\r\n',
      'ffffffffffffffff\r\n',
      `2000\r\n${'a'.repeat(8192)}\r\n0\r\n\r\n`,
      '0\r\nTrailer: x\r\n\r\n',
      '-1\r\n\r\n',
    ]),
  );
}

/** One HTTP request; most are hostile, some malformed beyond parsing. */
function hostileRequest(rng: Rng): Buffer {
  const method = rng.chance(0.7) ? rng.pick(['GET', 'POST']) : rng.pick(METHODS);
  const version = rng.chance(0.85) ? 'HTTP/1.1' : rng.pick(VERSIONS);
  const lines = [`${method} ${hostilePath(rng)} ${version}`];
  if (rng.chance(0.9)) lines.push('Host: hub');
  let chunked = false;
  for (let i = rng.int(5); i > 0; i--) {
    const name = rng.pick(HEADER_NAMES);
    if (name === 'Transfer-Encoding') chunked = true;
    lines.push(`${name}: ${hostileHeaderValue(rng, name)}`);
  }
  if (rng.chance(0.05)) lines.push(' folded continuation');
  const eol = rng.chance(0.05) ? rng.pick(['\n', '\r', '\r\r\n']) : '\r\n';
  return Buffer.concat([Buffer.from(`${lines.join(eol)}${eol}${eol}`, 'latin1'), rng.chance(0.4) ? hostileBody(rng, chunked) : Buffer.alloc(0)]);
}

export const httpSurface: Surface = {
  name: 'http',
  connections: 700,
  generate(rng) {
    // Several pipelined requests per connection: the hub answers each or closes at the first it cannot parse.
    const n = 1 + rng.int(7);
    const chunks = Array.from({ length: n }, () => hostileRequest(rng));
    return { port: 'https', tls: true, chunks, inputs: n };
  },
};

// ---------------------------------------------------------------------------------------------
// WebSocket upgrades: URLs, headers, and what follows the 101.

function hostileUpgrade(rng: Rng): Buffer {
  const path = rng.pick([
    '/bridges/%zz',
    '/bridges/',
    `/bridges/${rng.text(rng.int(100))}`,
    `/bridges/${rng.bytes(20).toString('hex')}`,
    '/$iothub/websocket',
    '/$iothub/websocket?x=%zz',
    '/',
    '//',
    '*',
    hostilePath(rng),
  ]);
  const headers: Record<string, string> = {};
  if (rng.chance(0.3)) headers['sec-websocket-key'] = rng.pick(['', 'short', rng.text(24), 'dGhlIHNhbXBsZSBub25jZQ==']);
  if (rng.chance(0.2)) headers['sec-websocket-version'] = rng.pick(['8', '14', 'x', '']);
  if (rng.chance(0.2)) headers.upgrade = rng.pick(['h2c', 'websocket, h2c', rng.text(10)]);
  if (rng.chance(0.5)) headers['sec-websocket-protocol'] = rng.pick(['mqtt', 'MQTT', 'mqttv3.1', ',,,', rng.text(rng.int(300)), 'mqtt, mqtt']);
  if (rng.chance(0.4)) headers.authorization = rng.pick(['Bearer v1.' + rng.text(40) + '.' + rng.text(40), 'Bearer ' + rng.text(rng.int(400)), 'Bearer', 'Bearer v1.e30.AAAA']);
  if (rng.chance(0.2)) headers['x-devstreams-ext'] = rng.pick(['', rng.text(rng.int(500)), 'eof,resize,' + 'x,'.repeat(200)]);
  if (rng.chance(0.1)) headers['sec-websocket-extensions'] = rng.pick(['permessage-deflate', 'permessage-deflate; client_max_window_bits=99', rng.text(50)]);
  const request = Buffer.from(upgradeRequest(path, headers), 'latin1');
  const after = rng.chance(0.5)
    ? rng.pick([
        () => wsFrame(rng.bytes(rng.int(200))),
        () => wsFrame(rng.bytes(10), { announce: 2 ** 40 }),
        () => wsFrame(rng.bytes(300), { opcode: 9 }),
        () => wsFrame(rng.bytes(10), { opcode: 3 }),
        () => rng.bytes(rng.int(500)),
        () => Buffer.from([0x82, 0x05, 1, 2, 3, 4, 5]), // unmasked client frame
      ])()
    : Buffer.alloc(0);
  return Buffer.concat([request, after]);
}

export const upgradeSurface: Surface = {
  name: 'upgrade',
  connections: 2_000,
  generate(rng) {
    return { port: 'https', tls: true, chunks: [hostileUpgrade(rng)], inputs: 1 };
  },
};

// ---------------------------------------------------------------------------------------------
// MQTT: packets before CONNECT, malformed CONNECTs, and packets after a valid CONNECT; over TLS and
// over WebSocket.

function mqttString(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  const len = Buffer.alloc(2);
  len.writeUInt16BE(Math.min(b.length, 0xffff));
  return Buffer.concat([len, b]);
}

/** A CONNECT packet (3.1.1) from its parts; `flags` lets a generator break the rules. */
export function mqttConnectPacket(o: { clientId: string | Buffer; username?: string; password?: string | Buffer; will?: { topic: string; payload: Buffer; retain?: boolean }; protocol?: string; level?: number; flags?: number; keepalive?: number }): Buffer {
  let flags = 0x02; // clean session
  if (o.will) flags |= 0x04 | (o.will.retain ? 0x20 : 0);
  if (o.username !== undefined) flags |= 0x80;
  if (o.password !== undefined) flags |= 0x40;
  const keepalive = Buffer.alloc(2);
  keepalive.writeUInt16BE(o.keepalive ?? 60);
  const body = Buffer.concat([
    mqttString(o.protocol ?? 'MQTT'),
    Buffer.from([o.level ?? 4, o.flags ?? flags]),
    keepalive,
    mqttString(o.clientId),
    ...(o.will ? [mqttString(o.will.topic), mqttString(o.will.payload)] : []),
    ...(o.username !== undefined ? [mqttString(o.username)] : []),
    ...(o.password !== undefined ? [mqttString(o.password)] : []),
  ]);
  return Buffer.concat([Buffer.from([0x10]), mqttLength(body.length), body]);
}

function mqttPacket(type: number, flags: number, body: Buffer, announce?: number): Buffer {
  return Buffer.concat([Buffer.from([(type << 4) | flags]), mqttLength(announce ?? body.length), body]);
}

function hostileConnect(rng: Rng): Buffer {
  return rng.pick([
    () => Buffer.concat([Buffer.from([0x10]), mqttLength(rng.pick([268_435_455, 16 * 1024 * 1024, 300 * 1024, 20_000])), rng.bytes(rng.int(2000))]),
    () => Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]), // five length bytes
    () => mqttConnectPacket({ clientId: rng.text(rng.int(300)), username: rng.text(rng.int(200)), password: rng.bytes(rng.int(200)) }),
    () => mqttConnectPacket({ clientId: '__proto__', username: 'hub/__proto__/?api-version=2021-04-12', password: 'SharedAccessSignature sr=hub%2Fdevices%2F__proto__&sig=x&se=9999999999' }),
    () => mqttConnectPacket({ clientId: 'x', protocol: rng.pick(['MQIsdp', 'HTTP', '']), level: rng.pick([3, 5, 0, 255]) }),
    () => mqttConnectPacket({ clientId: 'x', flags: rng.int(256) }),
    () => mqttConnectPacket({ clientId: Buffer.from([0xff, 0xfe, 0x00]), username: 'u' }),
    () => mqttConnectPacket({ clientId: 'w', will: { topic: '$iothub/streams/res/200/?$rid=1', payload: rng.bytes(100), retain: true } }),
    () => mqttConnectPacket({ clientId: 'x' }).subarray(0, 1 + rng.int(12)),
    () => mqttPacket(1 + rng.int(15), rng.int(16), rng.bytes(rng.int(100))),
    () => rng.bytes(1 + rng.int(300)),
  ])();
}

function hostileAfterConnect(rng: Rng): Buffer {
  const topic = rng.pick(['#', '$SYS/#', '+/+', 'a/#/b', '$iothub/streams/POST/#', '$iothub/#', 'devices/other/messages/events/', '', '\u0000', rng.text(rng.int(200))]);
  const pid = Buffer.from([rng.int(256), rng.int(256)]);
  return rng.pick([
    () => mqttPacket(8, 2, Buffer.concat([pid, mqttString(topic), Buffer.from([rng.int(4)])])), // SUBSCRIBE
    () => mqttPacket(3, rng.pick([0, 1, 2, 3, 6, 9]), Buffer.concat([mqttString(topic), rng.bytes(rng.int(500))])), // PUBLISH, retain or bad QoS at times
    () => mqttPacket(3, 0, Buffer.concat([mqttString('devices/x/messages/events/'), Buffer.alloc(10)]), rng.pick([300 * 1024, 268_435_455, 1024 * 1024])), // oversized
    () => mqttPacket(6, 2, pid), // PUBREL for nothing
    () => mqttPacket(10, 2, Buffer.concat([pid, mqttString(topic)])), // UNSUBSCRIBE
    () => mqttConnectPacket({ clientId: 'again' }), // a second CONNECT
    () => mqttPacket(12, 0, Buffer.alloc(0)), // PINGREQ (fine)
    () => mqttPacket(rng.int(16), rng.int(16), rng.bytes(rng.int(50))),
    () => rng.bytes(1 + rng.int(200)),
  ])();
}

/** MQTT bytes of one connection: before CONNECT, or after a valid one. */
function hostileMqtt(rng: Rng, hub: HubUnderTest): { bytes: Buffer[]; inputs: number } {
  if (rng.chance(0.5) || hub.deviceConnects.length === 0) return { bytes: [hostileConnect(rng)], inputs: 1 };
  const n = 1 + rng.int(3);
  return { bytes: [rng.pick(hub.deviceConnects), ...Array.from({ length: n }, () => hostileAfterConnect(rng))], inputs: n };
}

export const mqttTlsSurface: Surface = {
  name: 'mqtt-tls',
  connections: 1_600,
  generate(rng, hub) {
    const { bytes, inputs } = hostileMqtt(rng, hub);
    return { port: 'mqtt', tls: true, chunks: bytes, inputs };
  },
};

export const mqttWebSocketSurface: Surface = {
  name: 'mqtt-ws',
  connections: 1_600,
  generate(rng, hub) {
    const { bytes, inputs } = hostileMqtt(rng, hub);
    // One WebSocket message per packet, or the stream cut across frames at random.
    const frames = rng.chance(0.7) ? bytes.map((b) => wsFrame(b)) : splitFrames(rng, Buffer.concat(bytes));
    return { port: 'https', tls: true, chunks: [Buffer.from(upgradeRequest('/$iothub/websocket', { 'sec-websocket-protocol': 'mqtt' })), ...frames], inputs };
  },
};

function splitFrames(rng: Rng, bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; ) {
    const n = 1 + rng.int(64);
    out.push(wsFrame(bytes.subarray(i, i + n)));
    i += n;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// TLS garbage on both TLS ports.

function hostileTls(rng: Rng): Buffer {
  const record = (type: number, version: number, body: Buffer, announce?: number): Buffer => {
    const h = Buffer.from([type, 3, version, 0, 0]);
    h.writeUInt16BE(announce ?? body.length, 3);
    return Buffer.concat([h, body]);
  };
  return rng.pick([
    () => rng.bytes(1 + rng.int(1000)),
    () => record(22, 1, Buffer.concat([Buffer.from([1, 0xff, 0xff, 0xff]), rng.bytes(rng.int(300))])), // ClientHello announcing 16 MiB
    () => record(22, rng.int(5), rng.bytes(rng.int(200)), 0xffff),
    () => record(rng.pick([20, 21, 23, 24, 99]), 3, rng.bytes(rng.int(100))),
    () => Buffer.from('GET / HTTP/1.1\r\nHost: hub\r\n\r\n'),
    () => Buffer.from([0x80, 0x2e, 0x01, 0x00, 0x02, ...rng.bytes(40)]), // SSLv2 hello
    () => mqttConnectPacket({ clientId: 'plain' }), // MQTT without TLS
  ])();
}

export const tlsGarbageSurface: Surface = {
  name: 'tls-garbage',
  connections: 1_500,
  generate(rng) {
    return { port: rng.chance(0.5) ? 'https' : 'mqtt', tls: false, chunks: [hostileTls(rng)], inputs: 1 };
  },
};

/** Every surface the suite covers. Add yours here (console, operators, ...). */
// ---------------------------------------------------------------------------------------------
// The web console (hub/console/, docs/console.md): sign-in bodies, session cookies, console paths,
// and its terminal WebSocket.

function hostileConsolePath(rng: Rng): string {
  return rng.pick([
    '/console',
    '/console/',
    '/console/login',
    '/console/api/login',
    '/console/api/logout',
    '/console/api/session',
    '/console/api/state',
    '/console/api/events',
    `/console/api/streams/${rng.bytes(16).toString('hex')}/close`,
    '/console/api/streams/../../x/close',
    '/console/assets/app.js',
    '/console/assets/../../hub.json',
    '/console/assets/%2e%2e%2fsecrets.json',
    '/console/d/pi/web/',
    '/console/d/%zz/web/',
    `/console/d/${rng.text(rng.int(300))}/${rng.text(rng.int(40))}/${rng.text(rng.int(200))}`,
    '/console/%00',
    `/console/${'a/'.repeat(rng.int(3000))}`,
  ]);
}

function hostileCookie(rng: Rng): string {
  return rng.pick([
    `__Host-devstreams-console=${rng.text(43)}`,
    `__Host-devstreams-console=${'A'.repeat(rng.int(9000))}`,
    '__Host-devstreams-console',
    '__Host-devstreams-console=; __Host-devstreams-console=x',
    `${'x=y; '.repeat(rng.int(2000))}`,
    rng.bytes(rng.int(200)).toString('latin1'),
  ]);
}

function hostileLoginBody(rng: Rng): string {
  return rng.pick([
    '{"operator":"service","key":"wrong"}',
    '{"operator":{"toString":1},"key":[1]}',
    '{"operator":"__proto__","key":"x","__proto__":{"admin":true}}',
    '{"operator": ',
    '[]',
    'null',
    `{"operator":"${'o'.repeat(rng.int(5000))}","key":"${'k'.repeat(rng.int(5000))}"}`,
    rng.text(rng.int(6000)),
  ]);
}

function hostileConsoleRequest(rng: Rng): Buffer {
  const post = rng.chance(0.5);
  const body = post ? Buffer.from(hostileLoginBody(rng), 'latin1') : Buffer.alloc(0);
  const lines = [`${post ? 'POST' : rng.pick(['GET', 'GET', 'HEAD', 'PUT', 'DELETE'])} ${post && rng.chance(0.6) ? '/console/api/login' : hostileConsolePath(rng)} HTTP/1.1`, 'Host: hub'];
  if (rng.chance(0.6)) lines.push(`Content-Type: ${rng.pick(['application/json', 'application/x-www-form-urlencoded', 'text/plain', rng.text(40)])}`);
  if (rng.chance(0.5)) lines.push(`Origin: ${rng.pick(['https://hub', 'https://evil.example', 'null', rng.text(60)])}`);
  if (rng.chance(0.3)) lines.push(`Sec-Fetch-Site: ${rng.pick(['same-origin', 'cross-site', 'none', rng.text(20)])}`);
  if (rng.chance(0.5)) lines.push(`Cookie: ${hostileCookie(rng)}`);
  if (rng.chance(0.3)) lines.push(`x-devstreams-csrf: ${rng.text(rng.int(100))}`);
  if (post) lines.push(`Content-Length: ${rng.chance(0.9) ? body.length : rng.pick([0, 99999, -1])}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body]);
}

function hostileConsoleUpgrade(rng: Rng): Buffer {
  const query = rng.pick(['', '?device=pi', `?device=${rng.text(rng.int(400))}&service=${rng.text(rng.int(100))}`, '?device=%zz', '?device=&service=', `?${'device=x&'.repeat(rng.int(500))}`]);
  const path = rng.chance(0.8) ? `/console/api/terminal${query}` : hostileConsolePath(rng);
  const headers: Record<string, string> = {};
  if (rng.chance(0.6)) headers.cookie = hostileCookie(rng);
  if (rng.chance(0.6)) headers.origin = rng.pick(['https://hub', 'https://evil.example', 'null', '']);
  const after = rng.chance(0.5) ? wsFrame(rng.bytes(rng.int(300)), rng.chance(0.3) ? { opcode: 1 } : {}) : Buffer.alloc(0);
  return Buffer.concat([Buffer.from(upgradeRequest(path, headers), 'latin1'), after]);
}

export const consoleSurface: Surface = {
  name: 'console',
  connections: 600,
  generate(rng) {
    if (rng.chance(0.3)) return { port: 'https', tls: true, chunks: [hostileConsoleUpgrade(rng)], inputs: 1 };
    const n = 1 + rng.int(4);
    return { port: 'https', tls: true, chunks: Array.from({ length: n }, () => hostileConsoleRequest(rng)), inputs: n };
  },
};

export const SURFACES: Surface[] = [httpSurface, upgradeSurface, mqttTlsSurface, mqttWebSocketSurface, tlsGarbageSurface, consoleSurface];
