/**
 * Control messages: our extension, carried in WebSocket text frames. IoT Hub's SDK samples write
 * every frame they receive into their target, so a control message goes only to a peer that
 * announced it understands that type (extension negotiation, below); binary frames stay raw bytes.
 * Unknown types are ignored; malformed ones are reported to the caller and never reach the stream
 * as data.
 */
export type ControlMessage =
  | { type: 'eof' }
  | { type: 'resize'; cols: number; rows: number }
  | { type: 'exit'; code: number | null; signal: string | null }
  /**
   * Service → device, first on a PTY stream when the device announced `exec`: what to start. No
   * `argv`: the service's shell; `argv`: one command, run by that shell with `-c` as sshd does.
   * `tty: false` runs it with pipes (no terminal, stderr apart). A service that announces `exec`
   * sends it before any byte (docs/shell.md "On the wire").
   */
  | { type: 'exec'; argv?: string[]; tty: boolean }
  /** Device → service: bytes the command wrote to its stderr (base64), when it runs without a terminal. */
  | { type: 'stderr'; data: string };

/** The control message types; each is an extension a side announces when it understands it. */
export type ControlType = ControlMessage['type'];

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

// --- Extension negotiation (docs/architecture.md "Extensions"; IoT Hub and its SDKs send none of this).

/** Upgrade request header: the extensions this side understands, comma-separated (`eof,resize,exit`). */
export const EXT_HEADER = 'x-devstreams-ext';
/** 101 response header from our hub to a side that announced: a hello frame follows once the peer is there. */
export const HELLO_HEADER = 'x-devstreams-hello';
/** The hello frame's type: `{"type":"hello","ext":[…]}`, the peer's extensions (empty for an SDK peer). */
export const HELLO_TYPE = 'hello';

/** Every extension this build understands; each side announces these on its streaming upgrade. */
export const STREAM_EXTENSIONS: readonly ControlType[] = ['eof', 'resize', 'exit', 'exec', 'stderr'];

const EXT_NAME = /^[a-z][a-z0-9-]{0,31}$/;
const MAX_EXTENSIONS = 32;
const MAX_EXT_HEADER_CHARS = 1024;

/**
 * Reads an extension list (the header's value, or the hello frame's `ext`): well-formed names only,
 * deduplicated and bounded, so a hostile list costs nothing. `null` when there is no list at all.
 */
export function parseExtensionList(value: string | string[] | undefined): string[] | null {
  if (value === undefined) return null;
  const text = (Array.isArray(value) ? value.join(',') : value).slice(0, MAX_EXT_HEADER_CHARS);
  const names = new Set<string>();
  for (const part of text.split(',')) {
    const name = part.trim().toLowerCase();
    if (EXT_NAME.test(name) && names.size < MAX_EXTENSIONS) names.add(name);
  }
  return [...names];
}

export function encodeHello(peerExtensions: readonly string[]): string {
  return JSON.stringify({ type: HELLO_TYPE, ext: peerExtensions });
}

/** The peer's extensions from a hello frame, or `null` when the frame is not a hello. */
export function decodeHello(text: string): string[] | null {
  const msg = decodeControl(text);
  if (msg?.type !== HELLO_TYPE || !Array.isArray(msg.ext)) return null;
  return parseExtensionList(msg.ext.filter((e): e is string => typeof e === 'string'));
}
