/**
 * The agent's small HTTP endpoint for the kubelet and Prometheus: `/healthz` (the process is alive
 * and its event loop answers), `/readyz` (200 when connected to the server or enforcing a desired
 * state restored from the state dir, 503 otherwise, with the reason as text) and `/metrics`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../common/logger.js';
import { errorMessage } from '../common/errors.js';
import type { AgentMetrics } from './metrics.js';

export interface ListenAddress {
  host: string;
  port: number;
}

/** Reads `HOST:PORT`, `[v6]:PORT`, `:PORT` or `PORT`; undefined when it is none of these. */
export function parseListen(text: string): ListenAddress | undefined {
  const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([^:[\]/]*)):)?(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export interface HealthServer {
  /** `http://host:port` actually bound (port 0 resolved). */
  url: string;
  close(): Promise<void>;
}

export async function startHealthServer(options: {
  listen: ListenAddress;
  ready: () => { ready: boolean; reason: string };
  metrics: AgentMetrics;
  logger: Logger;
}): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz' || path === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (path === '/readyz') {
      const r = options.ready();
      res.writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' }).end(`${r.reason}\n`);
      return;
    }
    if (path === '/metrics') {
      options.metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': options.metrics.registry.contentType }).end(text),
        (err: unknown) => {
          options.logger.warn({ err: errorMessage(err) }, 'metrics collection failed');
          res.writeHead(500).end();
        },
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
