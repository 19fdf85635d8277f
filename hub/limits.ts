/**
 * Connection limits of the hub's listeners, before and after a client has authenticated. The HTTP
 * ones are in http-guards.ts; docs/security.md has the table of all of them and what a client sees.
 */

/** A TLS handshake (HTTPS and MQTT/TLS ports) must complete within this; then the socket is cut. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** IoT Hub's largest device-to-cloud message; a device's publish payload may not exceed it. */
export const DEVICE_MESSAGE_MAX_BYTES = 256 * 1024;
/** Largest MQTT packet from an authenticated device: a full message plus room for topic and header. */
export const MQTT_PACKET_MAX_BYTES = DEVICE_MESSAGE_MAX_BYTES + 8 * 1024;
/**
 * Bytes a client may send before it has authenticated (its CONNECT and anything pipelined after).
 * A SAS CONNECT is about 400 bytes; this leaves room for long ids and a will message.
 */
export const MQTT_PREAUTH_MAX_BYTES = 16 * 1024;
/** The same before authentication, counted under MQTT over WebSocket (room for framing). */
export const MQTT_WS_PREAUTH_MAX_BYTES = 2 * MQTT_PREAUTH_MAX_BYTES;
/** A new MQTT connection (after TLS or the WebSocket upgrade) must send CONNECT within this (aedes' connectTimeout). */
export const MQTT_CONNECT_TIMEOUT_MS = 10_000;
