import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { BrokerEndpoint } from '../core/broker-endpoint';
import { DEFAULT_DEVICE_TOPIC_ROOT, deviceTopicRoot, topicRootTemplateProblem } from '../wire';
import { readSecretFile } from '../core/secret-file';

/**
 * `broker:` in the agent config (fleet mode, docs/scaling.md): the device connects to an external
 * MQTT broker (mosquitto, a cluster) instead of to the hub, under its own topic root, which the
 * broker's ACL confines it to. The hub section still names the hub (its streaming URLs are allowed,
 * its CA is trusted); the connection string still names the device.
 */
export const brokerSection = z.strictObject({
  /** `mqtts://host:8883` (or `mqtt://` on a trusted network). */
  url: z.string().regex(/^mqtts?:\/\/[^/]+\/?$/i, 'must be mqtts://host:port or mqtt://host:port'),
  /** The broker user name; the device id by default (the ACL patterns use %u). */
  username: z.string().min(1).optional(),
  /** A file holding only this device's broker password (mode 0600). */
  password_file: z.string().min(1).optional(),
  /** CA bundle that signs the broker's certificate; hub.ca, then the system CAs, otherwise. */
  ca: z.string().min(1).optional(),
  /** TLS client certificate and key (PEM) for brokers that authenticate devices by certificate. */
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
  /** Per-device topic root; `{device_id}` is replaced with the device id. */
  topic_root: z.string().min(1).default(DEFAULT_DEVICE_TOPIC_ROOT),
});

export type BrokerSection = z.infer<typeof brokerSection>;

/** What the control channel needs, files read. */
export type BrokerSettings = BrokerEndpoint & { topicRoot: string };

type Key = keyof BrokerSection;

/** Reads the files the section names; reports each problem against its key. */
export function loadBrokerSettings(section: BrokerSection, deviceId: string | undefined, problem: (key: Key, message: string) => void): BrokerSettings | undefined {
  const before = { n: 0 };
  const report = (key: Key, message: string): void => {
    before.n++;
    problem(key, message);
  };
  const read = (key: Key, file: string, secret: boolean): Buffer | undefined => {
    if (secret) {
      const r = readSecretFile(file, `broker.${key}`);
      if ('problem' in r) return void report(key, r.problem);
      return r.data;
    }
    try {
      return readFileSync(file);
    } catch (err) {
      report(key, `broker.${key}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return undefined;
    }
  };
  const templateProblem = topicRootTemplateProblem(section.topic_root);
  if (templateProblem) report('topic_root', `broker.topic_root ${templateProblem}`);
  else if (deviceId !== undefined) {
    try {
      deviceTopicRoot(section.topic_root, deviceId);
    } catch (err) {
      report('topic_root', `broker.topic_root: ${(err as Error).message}`);
    }
  }
  if ((section.cert === undefined) !== (section.key === undefined)) report(section.cert ? 'key' : 'cert', 'broker.cert and broker.key go together');
  if (section.cert && /^mqtt:/i.test(section.url)) report('cert', 'broker.cert needs an mqtts:// broker.url');
  const password = section.password_file ? read('password_file', section.password_file, true)?.toString('utf8').trim() : undefined;
  const caPem = section.ca ? read('ca', section.ca, false) : undefined;
  const certPem = section.cert ? read('cert', section.cert, false) : undefined;
  const keyPem = section.key ? read('key', section.key, true) : undefined;
  if (before.n) return undefined;
  return {
    url: section.url.replace(/\/$/, ''),
    topicRoot: section.topic_root,
    ...(section.username ? { username: section.username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(caPem ? { caPem } : {}),
    ...(certPem ? { certPem } : {}),
    ...(keyPem ? { keyPem } : {}),
  };
}
