/**
 * A problem in a file people edit by hand (the agent's YAML, the hub's devices.json and
 * operators.json, what provisioning finds on the boot partition), at the place an editor jumps to:
 * printed as `file:line:col: message`, 1-based.
 */
export interface FileProblem {
  file: string;
  line: number;
  col: number;
  message: string;
}

export function formatFileProblem(p: FileProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.message}`;
}
