import { request } from 'node:https';
import { startHubProcess, type CliProcess } from './cli';

/** One HTTPS request to the hub (its own CA is not checked here), the whole answer read. */
export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export function call(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers, rejectUnauthorized: false, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** `devstreams hub` on 127.0.0.1:0 with the device pages on a second port 0: both ports. */
export async function startConsoleHub(dataDir: string): Promise<CliProcess & { port: number; pagesPort: number }> {
  const hub = await startHubProcess(dataDir, 0, { args: ['--device-pages-listen', '127.0.0.1:0'] });
  const pages = await hub.waitForLine(/^device pages on port \d+$/);
  return Object.assign(hub, { pagesPort: Number(/(\d+)$/.exec(pages)![1]) });
}
