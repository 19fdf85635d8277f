import { createHash, timingSafeEqual } from 'node:crypto';
import { operatorAllows, type OperatorStore } from '../operators';

/**
 * Who may sign in to the console: an operator (`hub add-operator`; before any was added, `service`
 * with the service key) and its key, checked against the hub's operator store as it is now.
 */
export interface OperatorCheck {
  /** The operator and the revision of its record when the key is right; undefined otherwise. */
  verify(name: string, key: string): { operator: string; revision: string } | undefined;
  /** False once the operator is removed or its key or limits changed: the sessions it opened end. */
  stillValid(operator: string, revision: string): boolean;
  /** Whether the operator may see and reach this device (its `--devices` limits). */
  sees(operator: string, deviceId: string): boolean;
}

function sameText(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y) && a === b;
}

export function operatorStoreCheck(store: Pick<OperatorStore, 'get' | 'revision'>): OperatorCheck {
  return {
    verify(name, key) {
      const op = store.get(name);
      if (!op || !sameText(key, op.key)) return undefined;
      return { operator: op.name, revision: op.revision };
    },
    stillValid(operator, revision) {
      return store.revision(operator) === revision;
    },
    sees(operator, deviceId) {
      const op = store.get(operator);
      return op !== undefined && operatorAllows(op, deviceId);
    },
  };
}
