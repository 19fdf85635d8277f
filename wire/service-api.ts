import { API_VERSION } from './topics';

/** Service REST API of IoT Hub device streams: paths, headers, error bodies. */
export const HEADER = {
  isAccepted: 'iothub-streaming-is-accepted',
  url: 'iothub-streaming-url',
  authToken: 'iothub-streaming-auth-token',
  connectTimeout: 'iothub-streaming-connect-timeout-in-seconds',
  responseTimeout: 'iothub-streaming-response-timeout-in-seconds',
  /** Ours: why the device refused, when it said. IoT Hub never sends it. */
  refusal: 'x-devstreams-refusal',
} as const;

export const STREAM_HANDSHAKE_TIMEOUT_S = 60;

export function streamRequestPath(deviceId: string, streamName: string, moduleId?: string): string {
  const mod = moduleId ? `/modules/${encodeURIComponent(moduleId)}` : '';
  return `/twins/${encodeURIComponent(deviceId)}${mod}/streams/${encodeURIComponent(streamName)}?api-version=${API_VERSION}`;
}

/** IoT Hub's registry "list devices" path; our hub answers it with connection state and last health. */
export const DEVICES_PATH = '/devices';

export function parseStreamRequestPath(pathname: string): { deviceId: string; moduleId?: string; streamName: string } | null {
  const m = /^\/twins\/([^/]+)(?:\/modules\/([^/]+))?\/streams\/([^/]+)\/?$/.exec(pathname);
  if (!m) return null;
  try {
    return {
      deviceId: decodeURIComponent(m[1]!),
      ...(m[2] ? { moduleId: decodeURIComponent(m[2]) } : {}),
      streamName: decodeURIComponent(m[3]!),
    };
  } catch {
    return null;
  }
}

/** IoT Hub's numeric error codes that a device-streams service meets. */
export const HUB_ERROR = {
  ArgumentInvalid: { status: 400, errorCode: 400004 },
  IotHubUnauthorizedAccess: { status: 401, errorCode: 401002 },
  DeviceNotFound: { status: 404, errorCode: 404001 },
  DeviceNotOnline: { status: 404, errorCode: 404103 },
  /** Ours where IoT Hub has no code of its own: no such path, a method the path does not serve. */
  NotFound: { status: 404, errorCode: 404000 },
  MethodNotAllowed: { status: 405, errorCode: 405000 },
  MessageTooLarge: { status: 413, errorCode: 413002 },
  ThrottlingException: { status: 429, errorCode: 429001 },
  ServerError: { status: 500, errorCode: 500001 },
  GatewayTimeout: { status: 504, errorCode: 504101 },
} as const;
export type HubErrorName = keyof typeof HUB_ERROR;

export interface HubErrorBody {
  errorCode: number;
  trackingId: string;
  message: string;
  info: Record<string, unknown>;
  timestampUtc: string;
}

export function hubErrorBody(name: HubErrorName, message: string, trackingId: string): HubErrorBody {
  return {
    errorCode: HUB_ERROR[name].errorCode,
    trackingId,
    message,
    info: {},
    timestampUtc: new Date().toISOString(),
  };
}

export function parseIsAccepted(value: string | string[] | undefined): boolean {
  return String(value ?? '').trim().toLowerCase() === 'true';
}
