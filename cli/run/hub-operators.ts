import { HubDataDir } from '../../hub/data-dir';
import { OperatorStore, parseLimitList, type Operator } from '../../hub/operators';
import { formatServiceConnectionString } from '../../wire';

/**
 * The store as the tools see it: the data directory's operators.json, or `service` from secrets.json;
 * `serviceName` is that built-in operator's name.
 */
export function operatorStore(dataDir: string): { dir: HubDataDir; store: OperatorStore; serviceName: string } {
  const dir = new HubDataDir(dataDir);
  const secrets = dir.secrets();
  return { dir, store: new OperatorStore({ dataDir: dir, legacy: { name: secrets.service_policy_name, key: secrets.service_policy_key } }), serviceName: secrets.service_policy_name };
}

export function printConnectionString(dir: HubDataDir, op: Operator): void {
  process.stdout.write(`${formatServiceConnectionString({ hostName: dir.settings().host_name, sharedAccessKeyName: op.name, sharedAccessKey: op.key })}\n`);
}

function describeLimits(op: Operator): string {
  return `devices ${op.devices?.join(',') ?? 'all'}, services ${op.services?.join(',') ?? 'all'}`;
}

/** `hub add-operator NAME [--devices P] [--services S]`: the key is shown this once. */
export function addOperator(name: string, opts: { dataDir: string; devices?: string; services?: string; force?: boolean }): void {
  const { dir, store } = operatorStore(opts.dataDir);
  const limits = {
    ...(opts.devices !== undefined ? { devices: parseLimitList(opts.devices, 'devices') } : {}),
    ...(opts.services !== undefined ? { services: parseLimitList(opts.services, 'services') } : {}),
  };
  const op = store.add(name, limits, { force: opts.force });
  process.stderr.write(`added operator "${name}" (${describeLimits(op)}). Its key is shown only now: keep the connection string below; rotate-operator ${name} makes a new one.\n`);
  printConnectionString(dir, op);
}

export function removeOperator(name: string, opts: { dataDir: string; force?: boolean }): void {
  const { store } = operatorStore(opts.dataDir);
  store.remove(name, { force: opts.force });
  process.stderr.write(`removed operator "${name}": a running hub refuses its next request; streams it opened may finish.\n`);
}

export function rotateOperator(name: string, opts: { dataDir: string; force?: boolean }): void {
  const { dir, store } = operatorStore(opts.dataDir);
  const op = store.rotate(name, { force: opts.force });
  process.stderr.write(`replaced the key of operator "${name}": the old one is refused from now on.\n`);
  printConnectionString(dir, op);
}

export function listOperators(opts: { dataDir: string }): void {
  const { store } = operatorStore(opts.dataDir);
  store.load(); // a broken operators.json: ECONFIG with file:line:col, not the fallback
  for (const op of store.list()) process.stdout.write(`${op.name}\t${describeLimits(op)}\t${op.created || '-'}\n`);
}
