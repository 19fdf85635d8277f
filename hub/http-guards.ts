import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../core/log';

/**
 * What the hub's HTTPS port does with requests it cannot serve: every malformed request line, path,
 * header block or body gets a plain HTTP refusal and a debug line; nothing a client sends can throw
 * out of a handler. docs/security.md lists the limits.
 */

/** Largest request header block (Node's own default, written down): beyond it, 431. */
export const HTTP_MAX_HEADER_BYTES = 16 * 1024;
/** The service API's requests have empty bodies (IoT Hub's protocol); beyond this, 413. */
export const HTTP_MAX_BODY_BYTES = 4 * 1024;
/** From connection (after TLS) until the request headers are complete. */
export const HTTP_HEADERS_TIMEOUT_MS = 10_000;
/** From connection until the whole request (headers and body) has arrived. */
export const HTTP_REQUEST_TIMEOUT_MS = 30_000;
/** How often Node checks the two deadlines above (its default, 30 s, would let them overrun by that). */
export const HTTP_DEADLINE_CHECK_INTERVAL_MS = 1_000;

/**
 * The path of a request target in origin form (`/a/b?q`), undecoded; undefined for anything else
 * (`//x` is a path here, not a host: the target is never parsed as a URL).
 */
export function requestPath(target: string | undefined): string | undefined {
  if (!target || target[0] !== '/') return undefined;
  const end = target.search(/[?#]/);
  return end === -1 ? target : target.slice(0, end);
}

/** `decodeURIComponent` that says undefined instead of throwing on `%zz` or broken UTF-8. */
export function decodePathSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

/** Ends a raw socket (upgrade or parse error) with a short HTTP response and `Connection: close`. */
export function refuseOnSocket(socket: Duplex, status: number, body = '', contentType = 'text/plain'): void {
  if (socket.destroyed) return;
  const head = [`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`, 'Connection: close', `Content-Length: ${Buffer.byteLength(body)}`];
  if (body) head.push(`Content-Type: ${contentType}`);
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
  // A peer that never reads must not keep the socket: end() then a deadline.
  setTimeout(() => socket.destroy(), 2_000).unref();
}

/**
 * The server's `clientError` (a request Node's parser refused, or a header/request timeout): 431 for
 * an oversized header block, 408 for a timeout, 400 for the rest, then close.
 */
export function onClientError(log: Logger): (err: Error & { code?: string }, socket: Duplex) => void {
  return (err, socket) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const remote = (socket as Duplex & { remoteAddress?: string }).remoteAddress;
    log.debug({ code: err.code, status, remote }, 'malformed HTTP request refused');
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    refuseOnSocket(socket, status);
  };
}

/**
 * Reads and drops a request body of at most `HTTP_MAX_BODY_BYTES`. Returns false (after answering
 * 413 through `tooLarge`) when the declared or received length is over it.
 */
export function discardBody(req: IncomingMessage, res: ServerResponse, tooLarge: () => void): boolean {
  const declared = Number(req.headers['content-length'] ?? 0);
  const refuse = (): void => {
    res.shouldKeepAlive = false;
    if (!res.headersSent) tooLarge();
    req.removeAllListeners('data');
    // Stop reading once the answer is out: the rest of the body is not wanted.
    if (res.writableFinished) req.socket.destroySoon();
    else res.once('finish', () => req.socket.destroySoon());
  };
  if (declared > HTTP_MAX_BODY_BYTES) {
    refuse();
    return false;
  }
  let received = 0;
  req.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received > HTTP_MAX_BODY_BYTES) refuse();
  });
  return true;
}
