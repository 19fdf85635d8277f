import { createHash } from 'node:crypto';
import type { Logger } from '../core/log';
import { DevstreamsError, OPERATOR_NAME, isDevstreamsError, parseSasToken, verifySasToken, type SasToken } from '../wire';
import { newKey } from './device-registry';
import { FollowedRegistry, RegistryShapeError, entriesToJson, isJsonObject, isObjectName, keysOfBoth } from './registry-file';

/**
 * Operators: the people and scripts on the service side, each with its own key (operators.json,
 * 0600). A service connection string names its operator as `SharedAccessKeyName`, as an IoT Hub
 * shared access policy does. An operator may be limited to devices (`pi-*`) and services (`ssh`).
 * While operators.json does not exist there is one operator, `service`, whose key is the one in
 * secrets.json: service strings made before operators existed keep working. The first change
 * writes operators.json with `service` in it; from then on the file alone says who may connect.
 *
 * The hub follows the file as it changes: an operator removed or rotated is refused from its next
 * request (streams it already opened may finish). Parts that keep a signed-in operator (the console)
 * compare `revision(name)` with the one they signed in with, or listen for `change`.
 */
export interface OperatorRecord {
  key: string;
  created: string;
  /** Device id patterns (`*` any run, `?` one character); absent: every device. */
  devices?: string[];
  /** Service (stream) names; absent: every service. */
  services?: string[];
}

export interface Operator extends OperatorRecord {
  name: string;
  /** Changes whenever the key or the limits change; the same on every hub sharing the file. */
  revision: string;
}

export type OperatorChangeKind = 'added' | 'removed' | 'key-rotated' | 'limits-changed';

export interface OperatorChange {
  name: string;
  change: OperatorChangeKind;
}

export interface OperatorLimits {
  devices?: string[];
  services?: string[];
}

const PATTERN = /^[A-Za-z0-9\-._:@*?]{1,128}$/;

export function operatorNameProblem(name: string): string | undefined {
  if (!OPERATOR_NAME.test(name)) return `operator name "${name.slice(0, 80)}" must be 1-64 of letters, digits and . _ - @, starting with a letter or digit`;
  if (isObjectName(name)) return `operator name "${name}" is reserved: choose another`;
  return undefined;
}

/** Patterns compiled once: the console filters every device through them for each live view, every tick. */
const compiledPatterns = new Map<string, RegExp>();
const MAX_COMPILED_PATTERNS = 1024;

function globToRegExp(pattern: string): RegExp {
  let re = compiledPatterns.get(pattern);
  if (re) return re;
  const body = pattern.replace(/[.+^${}()|[\]\\-]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  re = new RegExp(`^${body}$`);
  if (compiledPatterns.size >= MAX_COMPILED_PATTERNS) compiledPatterns.clear();
  compiledPatterns.set(pattern, re);
  return re;
}

function matchesAny(patterns: string[] | undefined, value: string): boolean {
  return patterns === undefined || patterns.some((p) => globToRegExp(p).test(value));
}

/** Whether `op` may reach `deviceId` (and, when given, its service `service`). */
export function operatorAllows(op: OperatorLimits, deviceId: string, service?: string): boolean {
  return matchesAny(op.devices, deviceId) && (service === undefined || matchesAny(op.services, service));
}

/** `--devices 'pi-*,lab-?'` / `--services ssh,web`: a comma-separated list, each entry checked. */
export function parseLimitList(text: string, what: 'devices' | 'services'): string[] {
  const items = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw new DevstreamsError('EUSAGE', `--${what} wants a comma-separated list, not "${text}"`);
  for (const item of items) {
    if (!PATTERN.test(item)) throw new DevstreamsError('EUSAGE', `--${what}: "${item.slice(0, 80)}" must be letters, digits, - . _ : @ and the wildcards * ?`);
  }
  return items;
}

function revisionOf(name: string, r: OperatorRecord): string {
  return createHash('sha256').update(JSON.stringify([name, r.key, r.devices ?? null, r.services ?? null])).digest('hex').slice(0, 16);
}

const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string' && PATTERN.test(s));

function decodeOperators(raw: unknown): Map<string, OperatorRecord> {
  if (!isJsonObject(raw) || !isJsonObject(raw.operators)) throw new RegistryShapeError('expected {"operators": {NAME: {"key": ...}, ...}}');
  const out = new Map<string, OperatorRecord>();
  for (const [name, r] of Object.entries(raw.operators)) {
    const problem = operatorNameProblem(name);
    if (problem) throw new RegistryShapeError(problem, name);
    if (!isJsonObject(r) || typeof r.key !== 'string' || r.key === '') throw new RegistryShapeError(`operator "${name}": needs a "key"`, name);
    if (r.devices !== undefined && !isStringList(r.devices)) throw new RegistryShapeError(`operator "${name}": "devices" must be a list of device id patterns`, name);
    if (r.services !== undefined && !isStringList(r.services)) throw new RegistryShapeError(`operator "${name}": "services" must be a list of service names`, name);
    out.set(name, {
      key: r.key,
      created: typeof r.created === 'string' ? r.created : '',
      ...(r.devices !== undefined ? { devices: r.devices } : {}),
      ...(r.services !== undefined ? { services: r.services } : {}),
    });
  }
  return out;
}

function encodeOperators(ops: Map<string, OperatorRecord>): unknown {
  return { operators: entriesToJson(ops) };
}

function diffOperators(prev: Map<string, OperatorRecord>, next: Map<string, OperatorRecord>): OperatorChange[] {
  const changes: OperatorChange[] = [];
  for (const name of keysOfBoth(prev, next)) {
    const a = prev.get(name);
    const b = next.get(name);
    if (!a && b) changes.push({ name, change: 'added' });
    else if (a && !b) changes.push({ name, change: 'removed' });
    else if (a && b) {
      if (a.key !== b.key) changes.push({ name, change: 'key-rotated' });
      if (JSON.stringify([a.devices, a.services]) !== JSON.stringify([b.devices, b.services])) changes.push({ name, change: 'limits-changed' });
    }
  }
  return changes;
}

export interface OperatorStoreOptions {
  /** The hub data directory (operators.json inside it). */
  dataDir: { path(name: string): string };
  /** The operator that exists while operators.json does not: secrets.json's service policy. */
  legacy: { name: string; key: string };
  log?: Logger;
}

export class OperatorStore extends FollowedRegistry<Map<string, OperatorRecord>, OperatorChange> {
  private derived?: { from: Map<string, OperatorRecord>; operators: Map<string, Operator> };

  constructor(opts: OperatorStoreOptions) {
    super(
      {
        path: opts.dataDir.path('operators.json'),
        mode: 0o600,
        decode: decodeOperators,
        encode: encodeOperators,
        empty: () => new Map([[opts.legacy.name, { key: opts.legacy.key, created: '' }]]),
        ...(opts.log ? { log: opts.log } : {}),
      },
      diffOperators,
      (c) => [{ operator: c.name, change: c.change }, `operators: ${c.name} ${c.change}`],
    );
  }

  get(name: string): Operator | undefined {
    return this.operatorIn(this.file.current(), name);
  }

  list(): Operator[] {
    // One version of the file for the whole list: a re-read between two lookups cannot drop a name.
    const records = this.file.current();
    return [...records.keys()].sort().map((name) => this.operatorIn(records, name)!);
  }

  /** Derived once per version of the file (a new Map each time it is re-read), not on every lookup. */
  private operatorIn(records: Map<string, OperatorRecord>, name: string): Operator | undefined {
    if (this.derived?.from !== records) this.derived = { from: records, operators: new Map() };
    let op = this.derived.operators.get(name);
    if (op) return op;
    const r = records.get(name);
    if (!r) return undefined;
    op = { name, ...r, revision: revisionOf(name, r) };
    this.derived.operators.set(name, op);
    return op;
  }

  /** The operator's current revision; undefined once it is removed. A different one: key or limits changed. */
  revision(name: string): string | undefined {
    return this.get(name)?.revision;
  }

  /**
   * Checks an `Authorization: SharedAccessSignature …skn=NAME` header (or the bare token) against
   * NAME's key as of now, then `scope` (the service API checks `sr` names this hub and the target).
   * Returns the operator, or why it is refused (never throws).
   */
  verify(authorization: string | undefined, scope?: (token: SasToken) => void): { operator: Operator } | { refused: string } {
    if (!authorization) return { refused: 'no Authorization header (SharedAccessSignature expected)' };
    try {
      const token = parseSasToken(authorization);
      const operator = token.keyName === undefined ? undefined : this.get(token.keyName);
      if (!operator) return { refused: `unknown shared access policy "${(token.keyName ?? '').slice(0, 80)}"` };
      verifySasToken(token, operator.key);
      // What the token is for (`sr`): the caller's check throws a DevstreamsError to refuse it.
      scope?.(token);
      return { operator };
    } catch (err) {
      return { refused: isDevstreamsError(err) ? err.message : 'malformed token' };
    }
  }

  /** `hub add-operator NAME`: a fresh key (returned, to be printed once). */
  add(name: string, limits: OperatorLimits = {}, opts: { force?: boolean } = {}): Operator {
    const problem = operatorNameProblem(name);
    if (problem) throw new DevstreamsError('EUSAGE', problem);
    const current = this.file.readForWrite(opts.force);
    if (current.has(name)) throw new DevstreamsError('EUSAGE', `operator "${name}" exists already (rotate-operator gives it a new key)`);
    const record: OperatorRecord = { key: newKey(), created: new Date().toISOString(), ...limits };
    this.file.write(new Map(current).set(name, record));
    return this.get(name)!;
  }

  /** `hub remove-operator NAME`: refused from its next request on. */
  remove(name: string, opts: { force?: boolean } = {}): void {
    const current = this.file.readForWrite(opts.force);
    if (!current.has(name)) throw new DevstreamsError('EUSAGE', `no operator "${name.slice(0, 80)}"`);
    const next = new Map(current);
    next.delete(name);
    this.file.write(next);
  }

  /** `hub rotate-operator NAME`: a new key (returned); the old one is refused from now on. */
  rotate(name: string, opts: { force?: boolean } = {}): Operator {
    const current = this.file.readForWrite(opts.force);
    const record = current.get(name);
    if (!record) throw new DevstreamsError('EUSAGE', `no operator "${name.slice(0, 80)}"`);
    this.file.write(new Map(current).set(name, { ...record, key: newKey() }));
    return this.get(name)!;
  }
}
