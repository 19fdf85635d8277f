import { parseHostPort } from '../../core/address';
import { HubDataDir } from '../../hub/data-dir';
import { hubNames } from '../../hub/names';
import { DevstreamsError } from '../../wire';
import { printServiceString } from './hub-devices';

export interface HubInitOptions {
  dataDir: string;
  listen: string;
  publicHost?: string;
  san?: string[];
}

/**
 * `hub init`: makes the data directory a hub needs (CA, server certificate, service key, empty
 * registry, hub.json) without starting it, so devices and operators can be added first and the CA
 * handed out. The same names and files as a first start with the same options; an existing
 * directory is completed, never overwritten.
 */
export function initHub(opts: HubInitOptions): void {
  const listen = parseHostPort(opts.listen, '0.0.0.0');
  if (listen.port === 0 && !opts.publicHost) {
    throw new DevstreamsError('EUSAGE', 'hub init needs a fixed port (--listen HOST:PORT) or --public-host NAME[:PORT]: connection strings name it');
  }
  const names = hubNames(listen, opts.publicHost, opts.san);
  const dir = new HubDataDir(opts.dataDir);
  const existed = dir.initialized;
  dir.prepare({ host_name: '', listen: opts.listen }, names.certHosts);
  dir.writeSettings({ host_name: names.hostName(listen.port), listen: opts.listen });
  process.stderr.write(
    `${existed ? 'hub data directory already there, completed' : 'hub data directory made'}: ${opts.dataDir}\n` +
      `CA for devices and services to trust: ${dir.path('ca.pem')}\n` +
      `next: devstreams hub add-device ID --data-dir ${opts.dataDir}; devstreams hub --data-dir ${opts.dataDir} --listen ${opts.listen}${opts.publicHost ? ` --public-host ${opts.publicHost}` : ''}\n` +
      'the service connection string (operator "service"; add-operator gives each person their own):\n',
  );
  printServiceString({ dataDir: opts.dataDir });
}
