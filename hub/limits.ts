/**
 * Connection limits of the hub's listeners, before and after a client has authenticated. The HTTP
 * ones are in http-guards.ts; docs/security.md has the table of all of them and what a client sees.
 */

/** A TLS handshake (HTTPS and MQTT/TLS ports) must complete within this; then the socket is cut. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
