import { DevstreamsError } from './errors';

/**
 * MQTT topics of IoT Hub's device-streams control plane. IoT Hub routes `$iothub/…` per device
 * connection; on a plain broker the same layout sits under a per-device root (see `topicRoot`).
 */
export const IOTHUB_ROOT = '$iothub';
export const API_VERSION = '2020-09-30';

export interface StreamRequest {
  streamName: string;
  requestId: string;
  /** Decoded streaming URL the device is asked to dial. */
  url: string;
  /** Bearer token for that URL, raw. */
  authToken: string;
  /**
   * Ours (`$op`): the operator who asked, for the device's audit line. IoT Hub's SDKs ignore bag keys
   * they do not know (IoT Hub itself adds `$ip`), so it costs an SDK device nothing.
   */
  operator?: string;
}

/**
 * Operator names (a service connection string's SharedAccessKeyName, IoT Hub's policy names): up to
 * 64 of letters, digits and `. _ - @`, starting with a letter or digit. Checked at the hub when an
 * operator is made and at the device before a name from `$op` reaches its audit line.
 */
export const OPERATOR_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** `&$op=NAME` when the request names an operator; `encode` as the URL is (fleet brokers: no dots). */
export function operatorBagEntry(req: StreamRequest, encode: (s: string) => string = encodeURIComponent): string {
  return req.operator ? `&$op=${encode(req.operator)}` : '';
}

export function streamRequestSubscription(root = IOTHUB_ROOT): string {
  return `${root}/streams/POST/#`;
}

export function streamResponseSubscription(root = IOTHUB_ROOT): string {
  return `${root}/streams/res/#`;
}

export function formatStreamRequestTopic(req: StreamRequest, root = IOTHUB_ROOT): string {
  return (
    `${root}/streams/POST/${req.streamName}/?$rid=${req.requestId}` +
    `&$url=${encodeURIComponent(req.url)}&$auth=${req.authToken}${operatorBagEntry(req)}`
  );
}

function malformed(why: string): DevstreamsError {
  return new DevstreamsError('EMALFORMED_TOPIC', `malformed stream request: ${why}`);
}

/** Splits a property bag (`?$rid=1&$url=…`, the leading `?` optional) on `&`, then on the first `=`. */
export function parsePropertyBag(bag: string): Map<string, string> {
  const props = new Map<string, string>();
  const body = bag.startsWith('?') ? bag.slice(1) : bag;
  for (const part of body.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) props.set(part, '');
    else props.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return props;
}

/**
 * Parses `{root}/streams/POST/{streamName}/{bag}` the way the SDKs do: the prefix is matched
 * case-insensitively, the rest must be exactly two levels. Unknown bag keys (`$ip`) are ignored.
 */
export function parseStreamRequestTopic(topic: string, root = IOTHUB_ROOT): StreamRequest {
  if (typeof topic !== 'string') throw malformed('topic is not a string');
  const prefix = `${root}/streams/POST/`;
  if (topic.length < prefix.length || topic.slice(0, prefix.length).toLowerCase() !== prefix.toLowerCase()) {
    throw malformed(`topic does not start with ${prefix}`);
  }
  const rest = topic.slice(prefix.length).split('/');
  if (rest.length !== 2) throw malformed('expected {streamName}/{properties} after the prefix');
  const [streamName, bag] = rest as [string, string];
  if (streamName === '') throw malformed('empty stream name');
  const props = parsePropertyBag(bag);
  const requestId = props.get('$rid');
  const rawUrl = props.get('$url');
  // `%2E` is a `.` that a fleet broker could not carry (NATS: formatFleetStreamRequestTopic); IoT
  // Hub's tokens hold no `%`, so decoding it changes nothing for them.
  const authToken = props.get('$auth')?.replace(/%2E/gi, '.');
  if (!requestId) throw malformed('no $rid');
  if (!rawUrl) throw malformed('no $url');
  if (!authToken) throw malformed('no $auth');
  let url: string;
  try {
    url = decodeURIComponent(rawUrl);
  } catch {
    throw malformed('$url is not valid percent-encoding');
  }
  return { streamName, requestId, url, authToken, ...operatorFromBag(props.get('$op')) };
}

/** `$op` decoded and checked: an operator name, or nothing (a malformed one never fails the request). */
function operatorFromBag(raw: string | undefined): { operator?: string } {
  if (raw === undefined) return {};
  try {
    const name = decodeURIComponent(raw);
    return OPERATOR_NAME.test(name) ? { operator: name } : {};
  } catch {
    return {};
  }
}

/** `200` accepts, `400` rejects: IoT Hub knows no other codes. */
export type StreamResponseStatus = 200 | 400;

export function formatStreamResponseTopic(status: StreamResponseStatus, requestId: string, root = IOTHUB_ROOT): string {
  return `${root}/streams/res/${status}/?$rid=${requestId}`;
}

export function parseStreamResponseTopic(topic: string, root = IOTHUB_ROOT): { status: number; requestId: string } {
  const prefix = `${root}/streams/res/`;
  if (topic.slice(0, prefix.length).toLowerCase() !== prefix.toLowerCase()) {
    throw new DevstreamsError('EMALFORMED_TOPIC', `stream response topic does not start with ${prefix}`);
  }
  const rest = topic.slice(prefix.length).split('/');
  if (rest.length !== 2 || !/^\d{3}$/.test(rest[0]!)) {
    throw new DevstreamsError('EMALFORMED_TOPIC', 'stream response topic is not {status}/{properties}');
  }
  const requestId = parsePropertyBag(rest[1]!).get('$rid');
  if (!requestId) throw new DevstreamsError('EMALFORMED_TOPIC', 'stream response has no $rid');
  return { status: Number(rest[0]), requestId };
}

/** IoT Hub's device-to-cloud telemetry topic. */
export function telemetryTopic(deviceId: string): string {
  return `devices/${deviceId}/messages/events/`;
}

export function mqttUsername(hostName: string, deviceId: string): string {
  return `${hostName}/${deviceId}/?api-version=${API_VERSION}`;
}

/** Parses `{host}/{deviceId}/?api-version=…` (extra query keys tolerated). */
export function parseMqttUsername(username: string): { hostName: string; deviceId: string } | null {
  const parts = username.split('/');
  if (parts.length < 3 || parts[0] === '' || parts[1] === '') return null;
  return { hostName: parts[0]!, deviceId: parts[1]! };
}
