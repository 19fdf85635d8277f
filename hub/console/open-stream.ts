import { WebSocket } from 'ws';
import { dialStream } from '../../core/stream-dial';
import type { ServiceApi } from '../service-api';
import type { StreamingEndpoint } from '../streaming-endpoint';

/** How long the console waits for a device to answer and for the stream to join. */
export const CONSOLE_STREAM_TIMEOUT_S = 20;

/** Why the console could not open a stream; `code` is stable, `message` is for the operator. */
export class ConsoleStreamError extends Error {
  constructor(
    readonly code: 'THROTTLED' | 'DENIED' | 'NOT_FOUND' | 'OFFLINE' | 'REFUSED' | 'TIMEOUT' | 'FAILED',
    message: string,
  ) {
    super(message);
  }
}

export interface OnBehalfOf {
  operator: string;
  /** The browser's address, for the audit line. */
  remote?: string;
  signal?: AbortSignal;
}

export type StreamOpener = (deviceId: string, service: string, who: OnBehalfOf) => Promise<WebSocket>;

/**
 * Opens a stream on an operator's behalf: the hub asks the device exactly as the service API does
 * (so rate limits, audit and the device's allowlist apply), then dials its own streaming endpoint
 * over loopback as the service side. Resolves with the open WebSocket, paused (so no frame is lost
 * before a tunnel takes it).
 */
export function streamOpener(api: ServiceApi, endpoint: Pick<StreamingEndpoint, 'openedByConsole'>, localHost: () => string, caPem: Buffer): StreamOpener {
  return async (deviceId, service, who) => {
    // The same buckets as the service API: an operator in a browser gets no more streams than its scripts.
    const throttled = api.throttle(who.operator, deviceId);
    if (throttled) throw new ConsoleStreamError('THROTTLED', `too many stream requests ${throttled.who}: retry in ${throttled.retryAfterS} s`);
    const grant = await api.openStream(deviceId, service, { ...who, connectTimeoutS: CONSOLE_STREAM_TIMEOUT_S, responseTimeoutS: CONSOLE_STREAM_TIMEOUT_S });
    if ('error' in grant) {
      const code = grant.error === 'IotHubUnauthorizedAccess' ? 'DENIED' : grant.error === 'DeviceNotFound' ? 'NOT_FOUND' : grant.error === 'DeviceNotOnline' ? 'OFFLINE' : grant.error === 'GatewayTimeout' ? 'TIMEOUT' : 'FAILED';
      throw new ConsoleStreamError(code, grant.message);
    }
    if (!grant.accepted) throw new ConsoleStreamError('REFUSED', `${deviceId} refused the stream to "${service}"${grant.reason ? `: ${grant.reason}` : ''}`);
    if (who.remote) endpoint.openedByConsole(grant.streamId, who.remote, Date.now() + CONSOLE_STREAM_TIMEOUT_S * 1000);
    const url = new URL(grant.url);
    url.host = localHost();
    const ws = dialStream(url.toString(), grant.serviceToken, caPem, { proxy: 'none' });
    return new Promise<WebSocket>((resolve, reject) => {
      const fail = (why: string): void => {
        ws.terminate();
        reject(new ConsoleStreamError('FAILED', `could not join the stream to ${deviceId}: ${why}`));
      };
      ws.once('open', () => {
        ws.pause();
        ws.off('error', onError);
        resolve(ws);
      });
      const onError = (err: Error): void => fail((err as NodeJS.ErrnoException).code ?? err.message);
      ws.once('error', onError);
      ws.once('unexpected-response', (_req, res) => fail(`HTTP ${res.statusCode}`));
    });
  };
}
