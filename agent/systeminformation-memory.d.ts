// systeminformation's memory reader on its own (the package's index loads all ~40 of its modules).
declare module 'systeminformation/lib/memory' {
  import type { Systeminformation } from 'systeminformation';
  export function mem(): Promise<Systeminformation.MemData>;
}
