import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseHostPort } from './address';
import type { Logger } from './log';

/**
 * Prometheus text, written by hand rather than with a client library: each program has a handful
 * of gauges and counters and none needs a histogram.
 */
export class PromText {
  private readonly out: string[] = [];

  metric(name: string, type: 'gauge' | 'counter', help: string, samples: Array<[labels: string, value: number]>): this {
    this.out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) this.out.push(`${name}${labels} ${value}`);
    return this;
  }

  toString(): string {
    return `${this.out.join('\n')}\n`;
  }
}

/** Escapes a label value. */
export function promLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/**
 * `GET /metrics` on a (loopback) address. Listen failures are logged, not fatal: metrics must never
 * keep an agent or a hub from doing its job.
 */
export class MetricsEndpoint {
  private server?: Server;

  constructor(
    private readonly listen: string,
    private readonly render: () => string,
    private readonly log: Logger,
  ) {}

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(): Promise<void> {
    const { host, port } = parseHostPort(this.listen, '127.0.0.1');
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
        return;
      }
      const body = this.render();
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body);
    });
    server.requestTimeout = 10_000;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      this.server = server;
      this.log.info({ listen: `${host}:${this.port}` }, 'metrics endpoint listening');
    } catch (err) {
      this.log.error({ listen: this.listen, err: (err as NodeJS.ErrnoException).code ?? (err as Error).message }, 'metrics endpoint could not listen');
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
