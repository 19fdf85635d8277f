import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

/** A device's own dashboard: a page whose script opens a WebSocket next to it, which echoes. */
export const DEVICE_PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Device dashboard</title></head>
<body style="font-family: sans-serif; margin: 2em">
<h1>Device dashboard</h1>
<p>Served by the device on its own port, seen through the hub.</p>
<p id="ws">WebSocket: connecting…</p>
<script src="app.js"></script>
</body></html>
`;

/** The page's script, loaded by a relative URL (through the hub like the page). */
export const DEVICE_SCRIPT = `const url = new URL('ws', location.href);
url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
const ws = new WebSocket(url);
ws.onopen = () => ws.send('ping from the page');
ws.onmessage = (ev) => { document.getElementById('ws').textContent = 'WebSocket: ' + ev.data; };
ws.onerror = () => { document.getElementById('ws').textContent = 'WebSocket: failed'; };
`;

export async function startDeviceWeb(): Promise<{ port: number; requests: string[]; close: () => Promise<void> }> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url} cookie=${req.headers.cookie ?? ''}`);
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(DEVICE_PAGE);
    } else if (req.url === '/app.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(DEVICE_SCRIPT);
    } else {
      res.writeHead(404).end('not here\n');
    }
  });
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (ws) => ws.on('message', (data) => ws.send(`echo: ${data.toString()}`)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
