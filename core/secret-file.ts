import { readFileSync, statSync } from 'node:fs';

/**
 * Reads a file that holds a secret (the device connection string, a private key, a broker password):
 * refused, with the sentence that says how to fix it, when group or others may access it, as OpenSSH
 * refuses a private key that is. `setting` names the config key or flag in the message (`hub.key`,
 * `--broker-key`); `program` the process that refuses (the agent, the hub).
 */
export function readSecretFile(file: string, setting: string, program = 'the agent'): { data: Buffer } | { problem: string } {
  try {
    const mode = statSync(file).mode;
    if ((mode & 0o077) !== 0) {
      return { problem: `${setting}: ${file} is accessible by group or others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); ${program} refuses to start: run chmod 600 ${file}` };
    }
    return { data: readFileSync(file) };
  } catch (err) {
    return { problem: `${setting}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
}
