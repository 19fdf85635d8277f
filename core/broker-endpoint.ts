/** How to reach and log in to an external MQTT broker (fleet mode, docs/scaling.md): hub and agent alike. */
export interface BrokerEndpoint {
  /** `mqtts://host:port` or `mqtt://host:port`. */
  url: string;
  username?: string;
  password?: string;
  /** CA that signs the broker's certificate (mqtts); the system CAs otherwise. */
  caPem?: Buffer;
  /** TLS client certificate and key, for brokers that authenticate clients by certificate. */
  certPem?: Buffer;
  keyPem?: Buffer;
  /** Per-device topic root template; `devstreams/{device_id}` by default. */
  topicRoot?: string;
}
