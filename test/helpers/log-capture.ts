import { Writable } from 'node:stream';
import pino from 'pino';

/** A real pino logger whose JSON lines land in an array the test reads (to assert what is, and is not, logged). */
export function capturingLogger(level = 'debug'): { log: pino.Logger; lines: Array<Record<string, unknown>>; text: () => string } {
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) {
        if (!l.trim()) continue;
        raw.push(l);
        lines.push(JSON.parse(l) as Record<string, unknown>);
      }
      cb();
    },
  });
  return { log: pino({ level }, sink), lines, text: () => raw.join('\n') };
}
