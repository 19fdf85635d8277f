import { DevstreamsError } from './errors';
import { operatorBagEntry, type StreamRequest } from './topics';

/**
 * Topics on a plain (external, possibly clustered) MQTT broker. IoT Hub routes `$iothub/…` per
 * device connection; a plain broker cannot, so every device gets the same layout under its own root
 * (`devstreams/{device_id}` by default), which the broker's ACLs confine it to:
 *
 *   {root}/streams/POST/{name}/?$rid=…&$url=…&$auth=…   hub → device   (wire/topics.ts formats it)
 *   {root}/streams/res/{status}/?$rid=…                 device → hub
 *   {root}/messages/events/                             device → hub   (health telemetry)
 *   {root}/status                                       device → hub   retained `online`; Last Will `offline`
 *
 * The template names the device with `{device_id}`, which must be one whole topic level.
 */
export const DEVICE_ID_PLACEHOLDER = '{device_id}';
export const DEFAULT_DEVICE_TOPIC_ROOT = `devstreams/${DEVICE_ID_PLACEHOLDER}`;

/** Retained payloads of `{root}/status`. */
export const DEVICE_STATUS_ONLINE = 'online';
export const DEVICE_STATUS_OFFLINE = 'offline';

/** Checks a root template; returns why it is unusable, or undefined. */
export function topicRootTemplateProblem(template: string): string | undefined {
  const levels = template.split('/');
  if (levels.filter((l) => l === DEVICE_ID_PLACEHOLDER).length !== 1) return `must contain ${DEVICE_ID_PLACEHOLDER} exactly once, as a whole topic level`;
  if (template.includes('+') || template.includes('#')) return 'must not contain the MQTT wildcards + or #';
  if (levels.some((l) => l === '')) return 'must not have empty levels (leading, trailing or double "/")';
  if (template.startsWith('$')) return 'must not start with "$" (brokers reserve those topics)';
  if (template.includes('\0')) return 'must not contain NUL';
  return undefined;
}

function assertTemplate(template: string): void {
  const problem = topicRootTemplateProblem(template);
  if (problem) throw new DevstreamsError('EUSAGE', `device topic root "${template}" ${problem}`);
}

/** A device id becomes one topic level: no separators, wildcards or NUL. */
export function deviceTopicRoot(template: string, deviceId: string): string {
  assertTemplate(template);
  if (deviceId === '' || /[/+#\0]/.test(deviceId)) {
    throw new DevstreamsError('EUSAGE', `device id "${deviceId}" cannot be a topic level (no "/", "+", "#")`);
  }
  return template.replace(DEVICE_ID_PLACEHOLDER, deviceId);
}

export function deviceStatusTopic(root: string): string {
  return `${root}/status`;
}

export function deviceTelemetryTopic(root: string): string {
  return `${root}/messages/events/`;
}

/** What the hub subscribes to: every device's responses, status and telemetry. */
export function fleetSubscriptions(template: string): { responses: string; status: string; telemetry: string } {
  assertTemplate(template);
  const any = template.replace(DEVICE_ID_PLACEHOLDER, '+');
  return { responses: `${any}/streams/res/#`, status: deviceStatusTopic(any), telemetry: `${any}/messages/events/#` };
}

export type FleetMessage =
  | { kind: 'status'; deviceId: string; root: string }
  | { kind: 'response'; deviceId: string; root: string }
  | { kind: 'telemetry'; deviceId: string; root: string };

/** Which device a topic under the template belongs to and what it is; undefined for anything else. */
export function parseFleetTopic(template: string, topic: string): FleetMessage | undefined {
  const tpl = template.split('/');
  const levels = topic.split('/');
  if (levels.length <= tpl.length) return undefined;
  let deviceId = '';
  for (let i = 0; i < tpl.length; i++) {
    if (tpl[i] === DEVICE_ID_PLACEHOLDER) deviceId = levels[i]!;
    else if (tpl[i] !== levels[i]) return undefined;
  }
  if (deviceId === '') return undefined;
  const root = levels.slice(0, tpl.length).join('/');
  const rest = levels.slice(tpl.length);
  if (rest.length === 1 && rest[0] === 'status') return { kind: 'status', deviceId, root };
  if (rest[0] === 'streams' && rest[1]?.toLowerCase() === 'res') return { kind: 'response', deviceId, root };
  if (rest[0] === 'messages' && rest[1] === 'events') return { kind: 'telemetry', deviceId, root };
  return undefined;
}

/**
 * A stream request on a fleet broker: IoT Hub's layout, with every `.` in the property bag written
 * `%2E`. NATS's MQTT listener refuses topics containing `.` (its subject separator), and the URL's
 * host and the token carry dots; `$url` is percent-decoded by the device anyway and `$auth` has
 * `%2E` decoded (wire/topics.ts). Service names and device ids keep theirs: on NATS they must have none.
 */
export function formatFleetStreamRequestTopic(req: StreamRequest, root: string): string {
  const noDots = (s: string): string => s.replace(/\./g, '%2E');
  return `${root}/streams/POST/${req.streamName}/?$rid=${req.requestId}&$url=${noDots(encodeURIComponent(req.url))}&$auth=${noDots(req.authToken)}${operatorBagEntry(req, (op) => noDots(encodeURIComponent(op)))}`;
}
