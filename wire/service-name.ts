/**
 * The rule for a stream (service) name: the agent's allowlist keys and the `{streamName}` of
 * `POST /twins/{deviceId}/streams/{streamName}` at the hub. The name becomes an MQTT topic level, so
 * nothing that means something there (`/`, `#`, `+`, `$`) or to a terminal may appear.
 */
export const SERVICE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const SERVICE_NAME_RULE = 'service names are 1-64 of letters, digits, ".", "_" and "-"';

export function isServiceName(name: string): boolean {
  return SERVICE_NAME_PATTERN.test(name);
}
