import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';

/**
 * Certificates for a self-hosted hub, made with node-forge (pure JavaScript, the library the Node
 * ecosystem has used for years for exactly this); keys come from Node's own crypto, which is fast.
 */
export interface KeyAndCert {
  keyPem: string;
  certPem: string;
}

const CA_YEARS = 10;
const SERVER_YEARS = 2;
/**
 * How far before its creation a certificate is valid. A Pi has no real-time clock: it boots with the
 * time fake-hwclock saved at its last shutdown (or 1970) until NTP answers, which may be weeks
 * behind for a device that sat in a drawer. Its TLS check of the hub must not fail for that alone.
 */
export const CERT_BACKDATE_MS = 30 * 24 * 3600_000;

/** Validity of a new certificate: from `validFrom` (default: CERT_BACKDATE_MS ago) for `years`. */
export interface ValidityOptions {
  years?: number;
  /** Start of validity (tests use a future one to play a device whose clock is behind). */
  validFrom?: Date;
}

function newKeyPair(): { privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey; keyPem: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  return { privateKey: forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e), keyPem };
}

function serial(): string {
  // Positive 16-byte serial (top bit clear).
  const b = randomBytes(16);
  b[0]! &= 0x7f;
  return b.toString('hex');
}

function validity(cert: forge.pki.Certificate, years: number, validFrom?: Date): void {
  const now = Date.now();
  cert.validity.notBefore = validFrom ?? new Date(now - CERT_BACKDATE_MS);
  cert.validity.notAfter = new Date(Math.max(now, cert.validity.notBefore.getTime()) + years * 365 * 24 * 3600_000);
}

export function createCa(commonName: string, opts: ValidityOptions = {}): KeyAndCert {
  const keys = newKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial();
  validity(cert, opts.years ?? CA_YEARS, opts.validFrom);
  const attrs = [{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'devstreams' }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true, pathLenConstraint: 0 },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { keyPem: keys.keyPem, certPem: forge.pki.certificateToPem(cert) };
}

/** A leaf certificate signed by the CA: a server (with SANs) or a client (device X.509 identity). */
export function issueCertificate(ca: KeyAndCert, opts: { commonName: string; altNames?: string[]; usage: 'server' | 'client' } & ValidityOptions): KeyAndCert {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const keys = newKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial();
  validity(cert, opts.years ?? SERVER_YEARS, opts.validFrom);
  cert.setSubject([{ name: 'commonName', value: opts.commonName }]);
  cert.setIssuer(caCert.subject.attributes);
  const extensions: object[] = [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: opts.usage === 'server', clientAuth: opts.usage === 'client' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ];
  if (opts.altNames?.length) {
    extensions.push({
      name: 'subjectAltName',
      altNames: [...new Set(opts.altNames)].map((n) => (isIP(n) ? { type: 7, ip: n } : { type: 2, value: n })),
    });
  }
  cert.setExtensions(extensions);
  cert.sign(caKey, forge.md.sha256.create());
  return { keyPem: keys.keyPem, certPem: forge.pki.certificateToPem(cert) };
}

/** Subject alternative names of a PEM certificate (DNS names and IPs), for "is it still valid for this host". */
export function certificateAltNames(certPem: string): string[] {
  const cert = forge.pki.certificateFromPem(certPem);
  const ext = cert.getExtension('subjectAltName') as { altNames?: { type: number; value?: string; ip?: string }[] } | null;
  return (ext?.altNames ?? []).map((a) => (a.type === 7 ? a.ip ?? '' : a.value ?? '')).filter(Boolean);
}
