import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomicSync } from '../../core/atomic-file';
import { HubDataDir } from '../../hub/data-dir';
import { DeviceRegistry, type KeyName } from '../../hub/device-registry';
import { issueCertificate } from '../../hub/pki';
import { operatorStore, printConnectionString } from './hub-operators';
import { DevstreamsError, formatDeviceConnectionString } from '../../wire';

/** Device certificates last as long as server certificates; reissue with `add-device --x509 --renew`. */
const DEVICE_CERT_YEARS = 2;


/**
 * `hub add-device ID --x509`: registers an X.509 device and issues its certificate (CN = device id,
 * clientAuth, signed by the hub CA) into OUT as ID.pem and ID-key.pem, both 0600. Prints the file
 * names and, last, the connection string (`x509=true`).
 */
export function addX509Device(dataDir: string, id: string, outDir: string, force = false): { certFile: string; keyFile: string; connectionString: string } {
  const dir = new HubDataDir(dataDir);
  const settings = dir.settings();
  new DeviceRegistry(dir).add(id, { x509: true, force });
  const ca = { certPem: readFileSync(dir.path('ca.pem'), 'utf8'), keyPem: readFileSync(dir.path('ca-key.pem'), 'utf8') };
  const issued = issueCertificate(ca, { commonName: id, usage: 'client', years: DEVICE_CERT_YEARS });
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  const certFile = resolve(join(outDir, `${id}.pem`));
  const keyFile = resolve(join(outDir, `${id}-key.pem`));
  // Replaced whole (never written through a link at that name), 0600 from the start.
  writeFileAtomicSync(keyFile, issued.keyPem, 0o600);
  writeFileAtomicSync(certFile, issued.certPem, 0o600);
  return { certFile, keyFile, connectionString: formatDeviceConnectionString({ hostName: settings.host_name, deviceId: id, x509: true }) };
}

/** `hub add-device ID [--x509]`: prints the connection string last. */
export function addDevice(id: string, opts: { dataDir: string; x509?: boolean; out: string; force?: boolean }): void {
  if (opts.x509) {
    const issued = addX509Device(opts.dataDir, id, opts.out, opts.force);
    process.stderr.write(`certificate ${issued.certFile}
key ${issued.keyFile}
(set hub.cert and hub.key in the agent config; keep both 0600)
`);
    process.stdout.write(`${issued.connectionString}
`);
    return;
  }
  const dir = new HubDataDir(opts.dataDir);
  const settings = dir.settings();
  const record = new DeviceRegistry(dir).add(id, { force: opts.force });
  process.stdout.write(`${formatDeviceConnectionString({ hostName: settings.host_name, deviceId: id, sharedAccessKey: record.primary_key })}\n`);
}

/** `hub service-string`: the connection string of the operator `service` (the one every hub starts with). */
export function printServiceString(opts: { dataDir: string }): void {
  const { dir, store, serviceName } = operatorStore(opts.dataDir);
  store.load(); // a broken operators.json: ECONFIG with file:line:col, never secrets.json's key instead
  const op = store.get(serviceName);
  if (!op) throw new DevstreamsError('EUSAGE', `operator "${serviceName}" was removed: add-operator NAME gives a person or script its own connection string`);
  printConnectionString(dir, op);
}

/** `hub remove-device|disable-device|enable-device ID`: a running hub follows at once. */
export function changeDevice(verb: 'remove' | 'disable' | 'enable', id: string, opts: { dataDir: string; force?: boolean }): void {
  const registry = new DeviceRegistry(new HubDataDir(opts.dataDir));
  const write = { force: opts.force };
  if (verb === 'remove') {
    registry.remove(id, write);
    process.stderr.write(`removed device "${id}": a running hub refuses it from now on and ends its sessions.\n`);
  } else if (registry.setStatus(id, verb === 'disable' ? 'disabled' : 'enabled', write)) {
    process.stderr.write(verb === 'disable' ? `disabled device "${id}": refused at connect, no streams; enable-device ${id} undoes it.\n` : `enabled device "${id}".\n`);
  } else {
    process.stderr.write(`device "${id}" was already ${verb}d.\n`);
  }
}

/** `hub rotate-key ID --key primary|secondary`: replaces one key, prints the connection string with the new key. */
export function rotateKey(id: string, opts: { dataDir: string; key: string; force?: boolean }): void {
  if (opts.key !== 'primary' && opts.key !== 'secondary') throw new DevstreamsError('EUSAGE', '--key must be primary or secondary');
  const which = opts.key as KeyName;
  const dir = new HubDataDir(opts.dataDir);
  const settings = dir.settings();
  const record = new DeviceRegistry(dir).rotateKey(id, which, { force: opts.force });
  const other = which === 'primary' ? 'secondary' : 'primary';
  process.stderr.write(`replaced the ${which} key of "${id}"; the ${other} key still works. Devices using the old ${which} key are refused from their next connect.\n`);
  process.stdout.write(`${formatDeviceConnectionString({ hostName: settings.host_name, deviceId: id, sharedAccessKey: record[`${which}_key`] })}\n`);
}
