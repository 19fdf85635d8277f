import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { printableAscii } from '../../core/terminal-text';
import { refuseOnSocket } from '../http-guards';

/** Device, service and operator names in console URLs and bodies. */
export const MAX_NAME_CHARS = 128;
/** Sign-in bodies are a name and a key. */
export const MAX_JSON_BODY_BYTES = 4 * 1024;
export const BODY_TIMEOUT_MS = 10_000;

export const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
} as const;

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function redirect(res: ServerResponse, to: string): void {
  res.writeHead(303, { ...SECURITY_HEADERS, location: to, 'cache-control': 'no-store', 'content-length': 0 }).end();
}

/** Refuses an Upgrade request on the raw socket: the hub's refusal, with its deadline for a peer that never reads. */
export function refuseUpgrade(socket: Duplex, status: number, reason: string, detail?: string): void {
  refuseOnSocket(socket, status, `${printableAscii(detail ?? reason, 300)}\n`);
}

/**
 * The request comes from the console's own pages: its Origin (which browsers send with every
 * POST and WebSocket) names this hub, and Fetch Metadata, when sent, says same-origin.
 */
export function fromSameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `https://${req.headers.host ?? ''}`) return false;
  const site = req.headers['sec-fetch-site'];
  return site === undefined || site === 'same-origin';
}

/** Why a body was not read: over the size limit, or anything else (too slow, not a JSON object). */
export type BodyRefusal = 'too-large' | 'malformed';

/** Reads a small JSON object body; what is past the limit is read and dropped (memory stays bounded). */
export function readJsonBody(req: IncomingMessage, maxBytes = MAX_JSON_BODY_BYTES): Promise<Record<string, unknown> | BodyRefusal> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => finish('malformed'), BODY_TIMEOUT_MS);
    let done = false;
    const finish = (v: Record<string, unknown> | BodyRefusal): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.off('data', onData);
      req.resume();
      resolve(v);
    };
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > maxBytes) return finish('too-large');
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('error', () => finish('malformed'));
    req.on('end', () => {
      try {
        const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        finish(v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : 'malformed');
      } catch {
        finish('malformed');
      }
    });
  });
}
