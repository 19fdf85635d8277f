import type { Readable, Writable } from 'node:stream';
import { formatBytes } from '../core/format';
import type { Logger } from '../core/log';
import { startTunnel } from '../core/tunnel';
import { CLOSE, DevstreamsError } from '../wire';
import type { HubClient } from './hub-client';
import { StdioStream } from './stdio-stream';

export interface StdioProxyOptions {
  client: HubClient;
  deviceId: string;
  service: string;
  stdin: Readable;
  stdout: Writable;
  log: Logger;
}

/**
 * `devstreams proxy DEVICE [SERVICE]`: one stream with stdin and stdout as its local side, for ssh's
 * ProxyCommand (`ssh -o ProxyCommand='devstreams proxy %h' pi@pi-001`). ssh then knows the device
 * by its own name, so each device keeps its own known_hosts entry. The end of stdin is a half-close,
 * as a TCP FIN would be. Resolves when the stream ended cleanly at both ends; a failure to open it,
 * or a stream that did not end cleanly, rejects with a DevstreamsError whose message is the one line
 * ssh shows the person.
 */
export async function runStdioProxy(opts: StdioProxyOptions): Promise<void> {
  const { client, deviceId, service, stdin, stdout, log } = opts;
  const started = Date.now();
  const ws = await client.openStream(await client.requestStream(deviceId, service));
  log.debug({ device: deviceId, svc: service, setup_ms: Date.now() - started }, 'stream open');
  const local = new StdioStream(stdin, stdout, { inputEnd: 'end', remoteEnd: 'end-output' });
  const tunnel = startTunnel(local, ws);
  const onSignal = (signal: NodeJS.Signals): void => tunnel.close(CLOSE.NORMAL, `service side got ${signal}`);
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of signals) process.on(s, onSignal);
  try {
    const r = await tunnel.done;
    const counts = `sent ${formatBytes(r.bytesOut)} received ${formatBytes(r.bytesIn)}`;
    if (r.closeCode === CLOSE.NORMAL || r.closeCode === CLOSE.GOING_AWAY) {
      log.debug({ close_code: r.closeCode, bytes_out: r.bytesOut, bytes_in: r.bytesIn }, `stream closed, ${counts}`);
      return;
    }
    const why = r.closeReason || (r.closeCode === 1006 ? 'the connection to the hub was lost' : r.error ? r.error.message : 'no reason given');
    throw new DevstreamsError('ESTREAM_CLOSED', `the stream to ${deviceId}/${service} failed: ${why} (close code ${r.closeCode}, ${counts})`);
  } finally {
    for (const s of signals) process.off(s, onSignal);
    local.destroy();
  }
}
