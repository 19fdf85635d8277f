import type { DeviceRecord } from './device-registry';

/**
 * What a device's MQTT session was admitted with, and whether that still holds. A session lives no
 * longer than its credentials: it ends when its SAS token expires, when the key that signed the token
 * is rotated, when the device is removed or disabled, and when its client certificate expires.
 */
export type SessionCredential =
  | { kind: 'sas'; /** The key the token verified with. */ key: string; expiresAtMs: number }
  | { kind: 'x509'; notAfterMs: number };

/** setTimeout's longest delay (about 24.8 days): longer ones are re-armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** When the credential runs out (ms since the epoch). */
export function credentialEndMs(cred: SessionCredential): number {
  return cred.kind === 'sas' ? cred.expiresAtMs : cred.notAfterMs;
}

/** Why a session admitted with `cred` must end now, or undefined while it still holds. */
export function credentialEnded(cred: SessionCredential, record: DeviceRecord | undefined, nowMs = Date.now()): string | undefined {
  if (!record) return 'device removed from the registry';
  if (record.status === 'disabled') return 'device disabled';
  const x509 = record.authentication === 'x509_ca';
  if (cred.kind === 'sas') {
    if (x509) return 'device now authenticates with an X.509 certificate';
    if (cred.key !== record.primary_key && cred.key !== record.secondary_key) return 'the key its token was signed with was rotated';
    if (nowMs >= cred.expiresAtMs) return 'SAS token expired';
    return undefined;
  }
  if (!x509) return 'device now authenticates with keys';
  if (nowMs >= cred.notAfterMs) return 'client certificate expired';
  return undefined;
}

/** Calls `fn` at `atMs` (ms since the epoch), however far ahead. Returns the cancel function. */
export function callAt(atMs: number, fn: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    const delay = atMs - Date.now();
    if (delay <= 0) return fn();
    timer = setTimeout(arm, Math.min(delay, MAX_TIMER_MS));
    timer.unref();
  };
  arm();
  return () => clearTimeout(timer);
}
