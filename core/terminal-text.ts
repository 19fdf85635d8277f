/**
 * Text that came from a device (telemetry, status, refusal reasons, ids seen on a broker) on its way
 * to an operator's terminal: every character that a terminal acts on instead of printing becomes
 * `?`, so a device cannot move the cursor, retitle the window, hide text, or smuggle an escape
 * sequence (OSC 52 clipboard writes, hyperlinks) into someone's shell. That is C0 controls (ESC,
 * BEL, CR, backspace…, TAB included), DEL, C1 controls (U+0080–U+009F, CSI and OSC among them) and
 * the Unicode format characters that reorder or hide text (bidi embeddings, overrides and isolates,
 * zero-width joiners). Printable Unicode stays. JSON output needs none of this: JSON.stringify
 * escapes control characters itself.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

export function terminalSafe(text: string, maxChars = 500): string {
  const shown = text.length > maxChars ? `${text.slice(0, maxChars)}…` : text;
  return shown.replace(UNSAFE, '?');
}

/**
 * Text from the network on its way into a log field, an HTTP header or body, or a command line
 * (request paths, stream names, refusal reasons, operator names): printable ASCII only, every other
 * character `?`, cut to `maxChars`. Stricter than terminalSafe, for places that take no Unicode.
 */
export function printableAscii(text: string, maxChars: number): string {
  return text.slice(0, maxChars).replace(/[^\x20-\x7e]/g, '?');
}
