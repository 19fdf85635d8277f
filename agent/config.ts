import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isMap, isPair, isScalar, type Document, type Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { DevstreamsError, parseDeviceConnectionString, type DeviceConnectionString } from '../wire';

/**
 * The agent's configuration: one zod schema gives the type, the validation and the defaults.
 * YAML keys are snake_case; unknown keys are errors (a typo must not silently drop a setting).
 */
const serviceName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'service names are 1-64 of letters, digits, ".", "_" and "-"');

const tcpService = z.strictObject({
  port: z.number().int().min(1).max(65535),
  host: z.string().min(1).default('127.0.0.1'),
});

export const agentConfigSchema = z.strictObject({
  hub: z.strictObject({
    connection_string: z.string().min(1),
    /** CA bundle that signs the hub's certificate; the system CAs otherwise. */
    ca: z.string().min(1).optional(),
    /** Extra hosts (`name`, `*.domain`, optionally `:port`) whose streaming URLs the agent may dial. */
    stream_hosts: z.array(z.string().min(1)).default([]),
  }),
  services: z.record(serviceName, tcpService).default({}),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
    })
    .default({ level: 'info' }),
});

export type AgentConfigFile = z.infer<typeof agentConfigSchema>;
export type TcpServiceConfig = z.infer<typeof tcpService>;

export interface AgentConfig extends AgentConfigFile {
  /** Where it was read from (for messages). */
  file: string;
  device: DeviceConnectionString;
  /** Contents of hub.ca, read at load time so a reload sees the new file. */
  caPem?: Buffer;
}

export interface ConfigProblem {
  file: string;
  line: number;
  col: number;
  message: string;
}

export class ConfigError extends DevstreamsError {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super('ECONFIG', problems.map(formatProblem).join('\n'));
    this.problems = problems;
  }
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.message}`;
}

type Path = ReadonlyArray<PropertyKey>;

function dotted(path: Path): string {
  return path.map(String).join('.') || '(top level)';
}

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

function issueMessage(issue: z.core.$ZodIssue, value: unknown): string {
  const at = dotted(issue.path);
  switch (issue.code) {
    case 'invalid_type':
      if (value === undefined) return `${at} is required`;
      return `${at} must be ${issue.expected === 'object' ? 'a mapping' : issue.expected === 'array' ? 'a list' : `a ${issue.expected}`}`;
    case 'too_small':
      if (issue.origin === 'string' && Number(issue.minimum) === 1) return `${at} must not be empty`;
      return `${at}: ${issue.message}`;
    case 'too_big':
      return `${at}: ${issue.message}`;
    case 'invalid_value':
      return `${at} must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return `${at}: ${issue.message}`;
  }
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
export function parseAgentConfig(text: string, file: string): { config?: AgentConfig; problems: ConfigProblem[] } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const problems: ConfigProblem[] = [];
  const at = (node: YamlNode | undefined, message: string): void => {
    const pos = lineCounter.linePos(node?.range?.[0] ?? 0);
    problems.push({ file, line: pos.line, col: pos.col, message });
  };
  for (const err of doc.errors) {
    const pos = lineCounter.linePos(err.pos[0]);
    problems.push({ file, line: pos.line, col: pos.col, message: `YAML: ${err.message.split('\n')[0]}` });
  }
  if (problems.length) return { problems };
  const raw: unknown = doc.toJS() ?? {};
  const result = agentConfigSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) at(nodeAt(doc, [...issue.path, key], true), `${dotted([...issue.path, key])} is not a known setting`);
      } else if (issue.code === 'invalid_key') {
        at(nodeAt(doc, issue.path, true), `${dotted(issue.path)}: ${issue.issues[0]?.message ?? issue.message}`);
      } else {
        at(nodeAt(doc, issue.path), issueMessage(issue, getIn(raw, issue.path)));
      }
    }
    return { problems };
  }
  const data = result.data;
  let device: DeviceConnectionString | undefined;
  try {
    device = parseDeviceConnectionString(data.hub.connection_string);
  } catch (err) {
    at(nodeAt(doc, ['hub', 'connection_string']), `hub.connection_string: ${(err as Error).message}`);
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
  if (problems.length || !device) return { problems };
  return { config: { ...data, file, device, ...(caPem ? { caPem } : {}) }, problems };
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
