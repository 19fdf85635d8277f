import { readFileSync } from 'node:fs';
import { HubClient, type HubClientOptions } from '../../service/hub-client';
import { DevstreamsError, parseServiceConnectionString } from '../../wire';

/** Options every service-side subcommand (connect, shell, devices) takes. */
export interface ServiceCliOptions {
  ca?: string;
  proxy?: string;
}

export function readCa(file: string | undefined): Buffer | undefined {
  if (!file) return undefined;
  try {
    return readFileSync(file);
  } catch (err) {
    throw new DevstreamsError('ECONFIG', `cannot read CA file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export function serviceConnectionString(): string {
  const cs = process.env.DEVSTREAMS_CONNECTION_STRING;
  if (!cs) {
    throw new DevstreamsError('EUSAGE', 'set DEVSTREAMS_CONNECTION_STRING to the service connection string (devstreams hub service-string --data-dir DIR prints it)');
  }
  return cs;
}

/** The hub client of a service-side subcommand: DEVSTREAMS_CONNECTION_STRING, --ca and --proxy. */
export function serviceClient(opts: ServiceCliOptions): HubClient {
  const options: HubClientOptions = {
    service: parseServiceConnectionString(serviceConnectionString()),
    ...(opts.ca ? { caPem: readCa(opts.ca), caFile: opts.ca } : {}),
    ...(opts.proxy ? { proxy: opts.proxy } : {}),
  };
  return new HubClient(options);
}
