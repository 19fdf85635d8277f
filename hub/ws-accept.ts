import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { refuseOnSocket } from './http-guards';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const WS_KEY = /^[+/0-9A-Za-z]{22}==$/;

/**
 * Completes a WebSocket upgrade on the raw socket (RFC 6455 §4.2), for a relay that reads and writes
 * frames itself. Same checks as `ws`: GET, `Upgrade: websocket`, a well-formed key, version 13. No
 * subprotocol and no extension (permessage-deflate) is taken, as IoT Hub's gateway. Returns false
 * (and answers 400) when the request is not a valid upgrade.
 */
export function acceptUpgrade(req: IncomingMessage, socket: Duplex, extraHeaders: string[] = []): boolean {
  const key = req.headers['sec-websocket-key'];
  const version = req.headers['sec-websocket-version'];
  if (req.method !== 'GET' || String(req.headers.upgrade ?? '').toLowerCase() !== 'websocket' || typeof key !== 'string' || !WS_KEY.test(key.trim())) {
    refuseOnSocket(socket, 400, 'not a valid WebSocket upgrade');
    return false;
  }
  if (version !== '13' && version !== '8') {
    refuseOnSocket(socket, 400, 'unsupported WebSocket version (13 expected)');
    return false;
  }
  const accept = createHash('sha1').update(key.trim() + WS_GUID).digest('base64');
  const head = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${accept}`, ...extraHeaders];
  socket.write(`${head.join('\r\n')}\r\n\r\n`);
  return true;
}
