import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { DeviceConnectionString } from '../wire';
import { readSecretFile } from '../core/secret-file';

/**
 * The device's X.509 identity (connection string `x509=true`, `hub.cert` and `hub.key` in config).
 * Checked at load time so that a wrong file stops the agent with a sentence, not a TLS alert later:
 * both files must exist, not be accessible by group or others, hold PEM, belong together, and the
 * certificate's CN must be the device id (the hub checks the same).
 */
export interface DeviceIdentity {
  certPem: Buffer;
  keyPem: Buffer;
  certFile: string;
}

type Report = (key: 'cert' | 'key', message: string) => void;

function readPrivate(file: string, key: 'cert' | 'key', report: Report): Buffer | undefined {
  const read = readSecretFile(file, `hub.${key}`);
  if ('problem' in read) return void report(key, read.problem);
  return read.data;
}

export function loadDeviceIdentity(hub: { cert?: string | undefined; key?: string | undefined }, device: DeviceConnectionString | undefined, report: Report): DeviceIdentity | undefined {
  if (!hub.cert && !hub.key) {
    if (device?.x509) report('cert', 'hub.connection_string says x509=true: set hub.cert and hub.key to the device certificate and key files');
    return undefined;
  }
  if (!hub.cert || !hub.key) {
    report(hub.cert ? 'cert' : 'key', 'hub.cert and hub.key go together: set both');
    return undefined;
  }
  if (device && !device.x509) {
    report('cert', 'hub.cert is set but hub.connection_string has no x509=true (it authenticates with a key)');
    return undefined;
  }
  const certPem = readPrivate(hub.cert, 'cert', report);
  const keyPem = readPrivate(hub.key, 'key', report);
  if (!certPem || !keyPem) return undefined;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    report('cert', `hub.cert: ${hub.cert} holds no PEM certificate`);
    return undefined;
  }
  try {
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) {
      report('key', `hub.key: ${hub.key} is not the key of the certificate in ${hub.cert}`);
      return undefined;
    }
  } catch {
    report('key', `hub.key: ${hub.key} holds no PEM private key`);
    return undefined;
  }
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
  if (device && cn !== device.deviceId) {
    report('cert', `hub.cert: ${hub.cert} is for "${cn ?? '(no CN)'}", not for device "${device.deviceId}"`);
    return undefined;
  }
  if (Date.parse(cert.validTo) < Date.now()) {
    report('cert', `hub.cert: ${hub.cert} expired on ${cert.validTo}`);
    return undefined;
  }
  return { certPem, keyPem, certFile: hub.cert };
}
