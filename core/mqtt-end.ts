import type { MqttClient } from 'mqtt';
import { withinMs } from './deadline';

/** How long a clean MQTT DISCONNECT may take before the connection is simply dropped. */
export const MQTT_END_DEADLINE_MS = 2000;

/**
 * Ends an MQTT client: a clean DISCONNECT if the link allows it within the deadline, then a forced
 * end either way. Never throws (a broken connection cannot be closed politely), so `stop()` that
 * uses it keeps its promise of never throwing.
 */
export async function endMqttClient(client: MqttClient, deadlineMs = MQTT_END_DEADLINE_MS): Promise<void> {
  client.removeAllListeners('close');
  try {
    await withinMs(client.endAsync(false), deadlineMs);
  } catch {
    // fall through to the forced end
  }
  client.end(true);
}
