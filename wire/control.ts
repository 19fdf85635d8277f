/**
 * Control messages: our extension, carried in WebSocket text frames (IoT Hub's SDKs never send
 * text frames, so binary frames stay raw bytes). Unknown types are ignored; malformed ones are
 * reported to the caller and never reach the stream as data.
 */
export type ControlMessage =
  | { type: 'eof' }
  | { type: 'resize'; cols: number; rows: number }
  | { type: 'exit'; code: number | null; signal: string | null };

export function encodeControl(msg: ControlMessage): string {
  return JSON.stringify(msg);
}

/** Parses a text frame; `null` for anything that is not a JSON object with a string `type`. */
export function decodeControl(text: string): ({ type: string } & Record<string, unknown>) | null {
  if (text.length > 4096) return null;
  try {
    const v: unknown = JSON.parse(text);
    if (v && typeof v === 'object' && !Array.isArray(v) && typeof (v as { type?: unknown }).type === 'string') {
      return v as { type: string } & Record<string, unknown>;
    }
  } catch {
    // fall through
  }
  return null;
}
