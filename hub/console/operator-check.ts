import { createHash, timingSafeEqual } from 'node:crypto';
import type { HubSecrets } from '../data-dir';

/**
 * Who may sign in to the console: an operator name and its key. Until the hub has operators of its
 * own (`hub add-operator`), the one there is is the service policy (`service` and its key), the same
 * credential `devstreams shell` uses.
 */
export interface OperatorCheck {
  /** The operator and a fingerprint of the credential when the key is right; undefined otherwise. */
  verify(name: string, key: string): { operator: string; fingerprint: string } | undefined;
  /** False once the operator is gone or its key changed: the sessions it opened end. */
  stillValid(operator: string, fingerprint: string): boolean;
}

export function keyFingerprint(key: string): string {
  return createHash('sha256').update(key).digest('base64url').slice(0, 16);
}

function sameText(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y) && a === b;
}

/** The service policy as the console's only operator. */
export function servicePolicyCheck(secrets: () => Pick<HubSecrets, 'service_policy_name' | 'service_policy_key'>): OperatorCheck {
  return {
    verify(name, key) {
      const s = secrets();
      if (!sameText(name, s.service_policy_name) || !sameText(key, s.service_policy_key)) return undefined;
      return { operator: name, fingerprint: keyFingerprint(key) };
    },
    stillValid(operator, fingerprint) {
      const s = secrets();
      return operator === s.service_policy_name && fingerprint === keyFingerprint(s.service_policy_key);
    },
  };
}
