import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isMap, isPair, isScalar, type Document, type Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { proxyUrlProblem } from '../core/proxy';
import { loadDeviceIdentity, type DeviceIdentity } from './identity';
import { readSecretFile } from '../core/secret-file';
import { parseDurationMs } from '../core/duration';
import { formatFileProblem, type FileProblem } from '../core/file-problem';
import { DevstreamsError, SERVICE_NAME_PATTERN, SERVICE_NAME_RULE, parseDeviceConnectionString, type DeviceConnectionString } from '../wire';
import { ptyServiceProblems } from './pty/config-check';
import { dotted, issueMessage, serviceIndentationProblems, unknownKeyMessage } from './config-messages';
import { brokerSection, loadBrokerSettings, type BrokerSettings } from './broker-config';

/**
 * The agent's configuration: one zod schema gives the type, the validation and the defaults.
 * YAML keys are snake_case; unknown keys are errors (a typo must not silently drop a setting).
 */
const serviceName = z.string().regex(SERVICE_NAME_PATTERN, SERVICE_NAME_RULE);

/**
 * Every time setting in the config is written one way: `90s`, `30m`, `2h`, `1h30m` (milliseconds
 * inside), or `off` where "never" makes sense. A bare number is refused: seconds or minutes?
 */
function durationSchema(allowOff: boolean) {
  return z.unknown().transform((value, ctx) => {
    if (allowOff && value === 'off') return 0;
    const ms = typeof value === 'string' ? parseDurationMs(value) : undefined;
    if (ms === undefined || ms <= 0) {
      const shown = typeof value === 'string' || typeof value === 'number' ? `"${value}"` : 'this';
      ctx.addIssue({ code: 'custom', message: `${shown} is not a duration: write it like 90s, 30m, 2h or 1h30m${allowOff ? ', or off' : ''}` });
      return z.NEVER;
    }
    return ms;
  });
}
const duration = durationSchema(false);
const durationOrOff = durationSchema(true);

/** Per-service limits; each falls back to the `limits` section. Spread into every service kind. */
export const serviceLimitFields = {
  /** Concurrent streams to this service. */
  max_streams: z.number().int().min(1).max(10_000).optional(),
  /** Close a stream when no byte moved either way for this long (`off`: never). */
  idle_timeout: durationOrOff.optional(),
  /** Close a stream after this long, busy or not (`off`: never). */
  max_duration: durationOrOff.optional(),
};

const tcpService = z.strictObject({
  port: z.number().int().min(1).max(65535),
  host: z.string().min(1).default('127.0.0.1'),
  ...serviceLimitFields,
});

/** A terminal on the device instead of a port: see docs/shell.md. */
const ptyService = z.strictObject({
  pty: z.strictObject({
    command: z.string().startsWith('/', 'must be an absolute path'),
    args: z.array(z.string()).default([]),
    /** When the agent runs as root, the session drops to this user (uid, gid, supplementary groups). */
    user: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/, 'must be a user name').optional(),
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'environment names are letters, digits and "_"'), z.string()).default({}),
    /** Off: command must be listed in /etc/shells. */
    allow_any_command: z.boolean().default(false),
    /**
     * Whether `devstreams shell DEVICE -- CMD` may run a command through this shell (`command -c`).
     * Default: on for a login shell (whoever gets the shell can type the command anyway, and OpenSSH
     * allows commands wherever it allows a shell), off with allow_any_command (`-c` would get around
     * a program that is not a shell).
     */
    exec: z.boolean().optional(),
    max_sessions: z.number().int().min(1).max(1000).default(4),
    idle_timeout: duration.optional(),
    max_duration: duration.optional(),
  }),
  ...serviceLimitFields,
});

const LOOPBACK_LISTEN = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]|localhost):\d{1,5}$/;

export const agentConfigSchema = z.strictObject({
  hub: z.strictObject({
    /** The device connection string; or `connection_string_file`, or DEVSTREAMS_DEVICE_CONNECTION_STRING (wins). */
    connection_string: z.string().min(1).optional(),
    /** A file holding only the connection string (mode 0600), so the config itself holds no secret. */
    connection_string_file: z.string().min(1).optional(),
    /** CA bundle that signs the hub's certificate; the system CAs otherwise. */
    ca: z.string().min(1).optional(),
    /** Extra hosts (`name`, `*.domain`, optionally `:port`) whose streaming URLs the agent may dial. */
    stream_hosts: z.array(z.string().min(1)).default([]),
    /** Control channel: MQTT over WebSocket on the hub's port (443: one outbound port) or MQTT over TLS. */
    transport: z.enum(['websocket', 'mqtt_tls']).default('websocket'),
    /** Port of the hub's MQTT/TLS listener when transport is mqtt_tls. */
    mqtt_tls_port: z.number().int().min(1).max(65535).default(8883),
    /** HTTP CONNECT proxy `http://[user:pass@]host:port`, or `none`; HTTPS_PROXY/NO_PROXY otherwise. */
    proxy: z.string().min(1).optional(),
    /** X.509 identity (connection string `x509=true`): PEM files, not readable by group or others. */
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
    /** Turns TLS verification off. Never in production; logged loudly at every connect. */
    insecure: z.boolean().default(false),
    /**
     * How long each SAS token the agent signs is good for; it reconnects with a fresh one at 80 % of
     * it, before the hub ends the session. The hub accepts at most 24h (wire/sas.ts MAX_SAS_LIFETIME_S).
     */
    sas_token_lifetime: duration
      .refine((ms) => ms >= 10_000 && ms <= 86_400_000, 'hub.sas_token_lifetime must be between 10s and 24h')
      .default(3_600_000),
  }),
  /** Fleet mode: connect to an external MQTT broker instead of the hub (agent/broker-config.ts). */
  broker: brokerSection.optional(),
  services: z.record(serviceName, z.union([tcpService, ptyService])).default({}),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
    })
    .default({ level: 'info' }),
  limits: z
    .strictObject({
      /** Concurrent streams on this device, all services together. */
      max_streams: z.number().int().min(1).max(10_000).default(128),
      /** Concurrent streams per service, unless the service sets `max_streams`. */
      max_streams_per_service: z.number().int().min(1).max(10_000).default(64),
      idle_timeout: durationOrOff.default(3_600_000),
      max_duration: durationOrOff.default(0),
    })
    .default({ max_streams: 128, max_streams_per_service: 64, idle_timeout: 3_600_000, max_duration: 0 }),
  telemetry: z
    .strictObject({
      /** Time between health messages on the device-to-cloud topic (`off`: none). */
      interval: durationOrOff
        .refine((ms) => ms === 0 || (ms >= 10_000 && ms <= 86_400_000), 'telemetry.interval must be off or between 10s and 1d')
        .default(300_000),
    })
    .default({ interval: 300_000 }),
  /** JSON file `devstreams status` reads; default $RUNTIME_DIRECTORY/status.json under systemd. */
  status_file: z.string().min(1).optional(),
  /** Prometheus text metrics on a loopback address (`127.0.0.1:9464`); off unless set. */
  metrics_listen: z.string().regex(LOOPBACK_LISTEN, 'metrics_listen must be a loopback host:port such as 127.0.0.1:9464').optional(),
  /** On SIGTERM: how long open streams may run to their end before the rest are reset (keep it under the unit's TimeoutStopSec). */
  drain_timeout: durationOrOff.default(10_000),
  /** Streaming WebSockets are pinged this often; a hub silent for two intervals is taken for gone. */
  ping_interval: duration.refine((ms) => ms >= 100 && ms <= 600_000, 'ping_interval must be between 100ms and 10m').default(30_000),
});

export type AgentConfigFile = z.infer<typeof agentConfigSchema>;
export type TcpServiceConfig = z.infer<typeof tcpService>;
export type PtyServiceConfig = z.infer<typeof ptyService>;
export type ServiceConfig = TcpServiceConfig | PtyServiceConfig;

/** Whether a PTY service runs commands (`shell DEVICE -- CMD`): `exec`, else on exactly for login shells. */
export function ptyAllowsExec(s: PtyServiceConfig): boolean {
  return s.pty.exec ?? !s.pty.allow_any_command;
}

export function isPtyService(s: ServiceConfig): s is PtyServiceConfig {
  return 'pty' in s;
}

export interface AgentConfig extends AgentConfigFile {
  /** Where it was read from (for messages). */
  file: string;
  device: DeviceConnectionString;
  /** Contents of hub.ca, read at load time so a reload sees the new file. */
  caPem?: Buffer;
  /** hub.cert and hub.key, read and checked at load time (X.509 devices). */
  identity?: DeviceIdentity;
  /** broker section, files read (fleet mode). */
  brokerSettings?: BrokerSettings;
}

export class ConfigError extends DevstreamsError {
  readonly problems: FileProblem[];
  constructor(problems: FileProblem[]) {
    super('ECONFIG', problems.map(formatFileProblem).join('\n'));
    this.problems = problems;
  }
}

type Path = ReadonlyArray<PropertyKey>;

/** Finds the YAML node for a path, falling back to the nearest ancestor that exists. */
function nodeAt(doc: Document, path: Path, wantKey = false): YamlNode | undefined {
  let node: unknown = doc.contents;
  let found: YamlNode | undefined = doc.contents ?? undefined;
  for (const seg of path) {
    if (!isMap(node) && !(node && typeof node === 'object' && 'items' in node)) break;
    const items = (node as { items: unknown[] }).items;
    let next: unknown;
    if (isMap(node)) {
      const pair = items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair || !isPair(pair)) break;
      next = wantKey && seg === path[path.length - 1] ? pair.key : pair.value;
    } else {
      next = items[Number(seg)];
    }
    if (!next) break;
    node = next;
    found = next as YamlNode;
  }
  return found;
}

/**
 * A service is a TCP port or a PTY: when neither fits, report the problems of the branch whose keys
 * the user wrote (`port` or `pty`), not zod's bare "Invalid input".
 */
function unionBranchIssues(issue: z.core.$ZodIssue, raw: unknown): z.core.$ZodIssue[] {
  // Only a service entry (`services.NAME`) is a union of shapes; say which shapes it may take.
  if (issue.code !== 'invalid_union' || issue.errors.length === 0 || issue.path[0] !== 'services' || issue.path.length !== 2) return [issue];
  const fitting = issue.errors.filter((branch) => !branch.some((i) => i.code === 'unrecognized_keys' && i.path.length === 0));
  if (fitting.length === 1) return fitting[0]!.map((i) => ({ ...i, path: [...issue.path, ...i.path] }) as z.core.$ZodIssue).flatMap((i) => unionBranchIssues(i, raw));
  const value = getIn(raw, issue.path);
  const has = (k: string): boolean => value !== null && typeof value === 'object' && k in value;
  const message = has('port') && has('pty')
    ? `${dotted(issue.path)} has both port and pty: a service is a TCP port or a terminal, not both`
    : `${dotted(issue.path)} needs port (a TCP service) or pty (a terminal)`;
  return [{ ...issue, message }];
}

function getIn(obj: unknown, path: Path): unknown {
  let v = obj;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[seg as string];
  }
  return v;
}

/**
 * Parses and validates a config text. Returns every problem at once, each with file, line and
 * column, rather than stopping at the first.
 */
/** The environment variable that, when set, supplies the device connection string (it wins over the file). */
export const CONNECTION_STRING_ENV = 'DEVSTREAMS_DEVICE_CONNECTION_STRING';

/** Where the device secret comes from: the environment, `connection_string_file`, or the config itself. */
function connectionStringSource(
  hub: { connection_string?: string | undefined; connection_string_file?: string | undefined },
  env: NodeJS.ProcessEnv,
  problem: (key: 'connection_string' | 'connection_string_file' | undefined, message: string) => void,
): { text: string; from: string; key?: 'connection_string' | 'connection_string_file' } | undefined {
  const fromEnv = env[CONNECTION_STRING_ENV];
  if (fromEnv) return { text: fromEnv.trim(), from: CONNECTION_STRING_ENV };
  if (hub.connection_string !== undefined && hub.connection_string_file !== undefined) {
    problem('connection_string_file', 'set hub.connection_string or hub.connection_string_file, not both');
    return undefined;
  }
  if (hub.connection_string !== undefined) return { text: hub.connection_string, from: 'hub.connection_string', key: 'connection_string' };
  if (hub.connection_string_file !== undefined) {
    // The device's key: refused when group or others may read it, like hub.key.
    const read = readSecretFile(hub.connection_string_file, 'hub.connection_string_file');
    if ('problem' in read) return void problem('connection_string_file', read.problem);
    return { text: read.data.toString('utf8').trim(), from: 'hub.connection_string_file', key: 'connection_string_file' };
  }
  problem(undefined, `hub needs connection_string or connection_string_file (or ${CONNECTION_STRING_ENV} in the environment)`);
  return undefined;
}

/** Problems as the file reads, top to bottom (the schema reports them in its own order). */
function inFileOrder(problems: FileProblem[]): FileProblem[] {
  return [...problems].sort((a, b) => a.line - b.line || a.col - b.col);
}

/** Aliases a config may expand (yaml's own default is 100); a config needs few if any. */
export const YAML_MAX_ALIAS_COUNT = 100;

export function parseAgentConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): { config?: AgentConfig; problems: FileProblem[] } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const problems: FileProblem[] = [];
  const at = (node: YamlNode | undefined, message: string): void => {
    const pos = lineCounter.linePos(node?.range?.[0] ?? 0);
    problems.push({ file, line: pos.line, col: pos.col, message });
  };
  for (const err of doc.errors) {
    const pos = lineCounter.linePos(err.pos[0]);
    problems.push({ file, line: pos.line, col: pos.col, message: `YAML: ${err.message.split('\n')[0]}` });
  }
  if (problems.length) return { problems };
  let raw: unknown;
  try {
    // An alias bomb (a billion laughs) stops here instead of filling memory or the stack.
    raw = doc.toJS({ maxAliasCount: YAML_MAX_ALIAS_COUNT }) ?? {};
  } catch (err) {
    return { problems: [{ file, line: 1, col: 1, message: `YAML: ${(err as Error).message.split('\n')[0]}` }] };
  }
  const result = agentConfigSchema.safeParse(raw);
  if (!result.success) {
    // A mis-indented service: its real cause, once, instead of what the schema makes of it.
    const indentation = serviceIndentationProblems(agentConfigSchema, (raw as { services?: unknown }).services);
    for (const p of indentation) at(nodeAt(doc, p.path, true), p.message);
    const explained = new Set(indentation.map((p) => dotted(p.path)));
    for (const issue of result.error.issues.flatMap((i) => unionBranchIssues(i, raw))) {
      if (issue.path[0] === 'services' && explained.has(dotted(issue.path.slice(0, 2)))) continue;
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) at(nodeAt(doc, [...issue.path, key], true), unknownKeyMessage(agentConfigSchema, issue.path, key));
      } else if (issue.code === 'invalid_key') {
        at(nodeAt(doc, issue.path, true), `${dotted(issue.path)}: ${issue.issues[0]?.message ?? issue.message}`);
      } else {
        at(nodeAt(doc, issue.path), issueMessage(issue, getIn(raw, issue.path)));
      }
    }
    return { problems: inFileOrder(problems) };
  }
  const data = result.data;
  let device: DeviceConnectionString | undefined;
  const secret = connectionStringSource(data.hub, env, (key, message) => at(nodeAt(doc, key ? ['hub', key] : ['hub'], !key), message));
  if (secret) {
    try {
      device = parseDeviceConnectionString(secret.text);
    } catch (err) {
      at(nodeAt(doc, secret.key ? ['hub', secret.key] : ['hub']), `${secret.from}: ${(err as Error).message}`);
    }
  }
  let caPem: Buffer | undefined;
  if (data.hub.ca) {
    try {
      caPem = readFileSync(data.hub.ca);
      if (!caPem.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) {
        at(nodeAt(doc, ['hub', 'ca']), `hub.ca: ${data.hub.ca} holds no PEM certificate`);
      }
    } catch (err) {
      at(nodeAt(doc, ['hub', 'ca']), `hub.ca: cannot read ${data.hub.ca}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  for (const p of ptyServiceProblems(data.services)) at(nodeAt(doc, p.path), p.message);
  const identity = loadDeviceIdentity(data.hub, device, (key, message) => at(nodeAt(doc, ['hub', key]), message));
  const proxyProblem = data.hub.proxy ? proxyUrlProblem(data.hub.proxy) : undefined;
  if (proxyProblem) at(nodeAt(doc, ['hub', 'proxy']), `hub.proxy: ${proxyProblem}`);
  const brokerSettings = data.broker ? loadBrokerSettings(data.broker, device?.deviceId, (key, message) => at(nodeAt(doc, ['broker', key]), message)) : undefined;
  if (problems.length || !device) return { problems: inFileOrder(problems) };
  return { config: { ...data, file, device, ...(caPem ? { caPem } : {}), ...(identity ? { identity } : {}), ...(brokerSettings ? { brokerSettings } : {}) }, problems };
}

/** Loads a config file; throws ConfigError listing every problem. */
export function loadAgentConfig(file: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file, line: 1, col: 1, message: `cannot read config: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
  }
  const { config, problems } = parseAgentConfig(text, file);
  if (!config) throw new ConfigError(problems);
  return config;
}
