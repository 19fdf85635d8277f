import type { z } from 'zod';

/**
 * check-config's messages in our words: the expected range instead of zod's "Too big: expected
 * number to be <=65535", a did-you-mean for unknown keys, the real cause of a mis-indented line.
 */

type Path = ReadonlyArray<PropertyKey>;
type AnySchema = z.core.$ZodType;

export function dotted(path: Path): string {
  return path.map(String).join('.') || '(top level)';
}

function def(schema: AnySchema): Record<string, unknown> & { type: string } {
  return schema._zod.def as unknown as Record<string, unknown> & { type: string };
}

/** The object shapes a schema can take at its top (through optional, default, union, record values). */
function shapes(schema: AnySchema | undefined): Record<string, AnySchema>[] {
  if (!schema) return [];
  const d = def(schema);
  switch (d.type) {
    case 'object':
      return [d.shape as Record<string, AnySchema>];
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
      return shapes(d.innerType as AnySchema);
    case 'pipe':
      return shapes(d.in as AnySchema);
    case 'union':
      return (d.options as AnySchema[]).flatMap(shapes);
    default:
      return [];
  }
}

/** The schema at a path of the config (record keys, such as service names, match any segment). */
function schemaAt(root: AnySchema, path: Path): AnySchema[] {
  let here: AnySchema[] = [root];
  for (const seg of path) {
    const next: AnySchema[] = [];
    for (const s of here) {
      let d = def(s);
      let cur = s;
      while (['optional', 'nullable', 'default', 'prefault', 'readonly'].includes(d.type)) {
        cur = d.innerType as AnySchema;
        d = def(cur);
      }
      if (d.type === 'record') next.push(d.valueType as AnySchema);
      else for (const shape of shapes(cur)) if (shape[String(seg)]) next.push(shape[String(seg)]!);
    }
    here = next;
  }
  return here;
}

/** The keys a mapping at `path` may hold. */
export function knownKeys(root: AnySchema, path: Path): string[] {
  return [...new Set(schemaAt(root, path).flatMap((s) => shapes(s).flatMap((shape) => Object.keys(shape))))];
}

/** Edit distance with adjacent transpositions (`hots` is one step from `host`). */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

const squash = (s: string): string => s.toLowerCase().replace(/[-_.]/g, '');

/**
 * What the person probably meant by an unknown key at `path`: a close spelling at the same level
 * (`hots` → `host`), a known key that is a word of it (`ca_file` → `ca`), or a nested key written
 * flat (`loglevel` → `log.level`).
 */
export function didYouMean(root: AnySchema, path: Path, key: string): string | undefined {
  const here = knownKeys(root, path);
  const k = key.toLowerCase();
  const limit = Math.max(1, Math.floor(k.length / 3));
  let best: { name: string; d: number } | undefined;
  for (const name of here) {
    const d = distance(k, name);
    if (d <= limit && (!best || d < best.d)) best = { name, d };
  }
  if (best) return best.name;
  const words = k.split(/[-_.]/);
  const word = here.find((name) => words.includes(name) || name.split('_').includes(k));
  if (word) return word;
  for (const parent of here) {
    for (const child of knownKeys(root, [...path, parent])) {
      if (squash(`${parent}${child}`) === squash(key)) return `${parent}.${child}`;
    }
  }
  return undefined;
}

/** An unknown key, with a suggestion (its full path) when there is one. */
export function unknownKeyMessage(root: AnySchema, path: Path, key: string): string {
  const guess = didYouMean(root, path, key);
  return `${dotted([...path, key])} is not a known setting${guess ? `: did you mean ${dotted([...path, guess])}?` : ''}`;
}

function bound(issue: { inclusive?: boolean }, word: 'most' | 'least', value: unknown): string {
  return issue.inclusive === false ? `${word === 'most' ? 'less' : 'more'} than ${String(value)}` : `at ${word} ${String(value)}`;
}

const UNIT: Record<string, string> = { string: ' characters', array: ' items', set: ' items' };

/** One zod issue as a sentence about the setting, never zod's own wording. */
export function issueMessage(issue: z.core.$ZodIssue, value: unknown): string {
  const at = dotted(issue.path);
  switch (issue.code) {
    case 'invalid_type':
      if (value === undefined) return `${at} is required`;
      if (value === null) return `${at} is empty: give it a value (or remove the line)`;
      return `${at} must be ${issue.expected === 'object' ? 'a mapping' : issue.expected === 'array' ? 'a list' : `a ${issue.expected}`}, not ${JSON.stringify(value)?.slice(0, 40)}`;
    case 'too_small':
      if (issue.origin === 'string' && Number(issue.minimum) === 1) return `${at} must not be empty`;
      return `${at} must be ${bound(issue, 'least', issue.minimum)}${UNIT[issue.origin] ?? ''}, not ${describe(value)}`;
    case 'too_big':
      return `${at} must be ${bound(issue, 'most', issue.maximum)}${UNIT[issue.origin] ?? ''}, not ${describe(value)}`;
    case 'invalid_value':
      return `${at} must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      // Our own refinement messages may already name the setting: never say it twice.
      return issue.message.startsWith(`${at} `) ? issue.message : `${at}: ${issue.message}`;
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `"${value.slice(0, 40)}"`;
  if (Array.isArray(value)) return `${value.length} items`;
  return String(value);
}

const isMapping = (v: unknown): boolean => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * The real cause of a mis-indented service: a `port:` (or any service setting) written at the level
 * of the service names reads as a service called `port`, and the service above it as empty.
 * Returns one problem per affected entry; their other issues are not worth showing.
 */
export function serviceIndentationProblems(root: AnySchema, services: unknown): { path: string[]; message: string }[] {
  if (!isMapping(services)) return [];
  const settings = new Set(knownKeys(root, ['services', '*']));
  const out: { path: string[]; message: string }[] = [];
  let emptyAbove: string | undefined;
  for (const [name, value] of Object.entries(services as Record<string, unknown>)) {
    if (value === null) {
      out.push({ path: ['services', name], message: `services.${name} has no settings: its port or pty must be indented under it` });
      emptyAbove = name;
      continue;
    }
    if (!isMapping(value) && settings.has(name)) {
      const fix = emptyAbove ? `indent it under ${emptyAbove}` : 'put it under a service name (services: NAME: port: 22)';
      out.push({ path: ['services', name], message: `services.${name}: "${name}" is a setting of a service, not a service name: ${fix}` });
      continue;
    }
    emptyAbove = undefined;
  }
  return out;
}
