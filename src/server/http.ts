/**
 * The server's plain HTTP routes, on the same listener as the agent WebSocket:
 *
 * - `GET /healthz`: the process is up.
 * - `GET /readyz`: state is loaded and the listener is up.
 * - `GET /metrics`: Prometheus text.
 * - `GET /api/v1/agents`: JSON status of every agent (admin bearer token, compared in constant time).
 * - `POST /api/v1/webhooks/gitlab|github|generic`: verified push notifications that make the
 *   server fetch the named project at once instead of waiting for the next poll.
 *
 * Request bodies are read with a size limit; errors answer with a short JSON `{error}` that never
 * echoes a secret.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { ServerMetrics } from './metrics.js';
import type { Registry } from './registry.js';
import { secretEquals, verifyGenericWebhook, verifyGitHubWebhook, verifyGitLabWebhook, type WebhookResult, type Headers } from './webhooks.js';

const MAX_WEBHOOK_BODY = 5 * 1024 * 1024;

const VERIFIERS: Record<string, (headers: Headers, body: Buffer, secret: string) => WebhookResult> = {
  gitlab: verifyGitLabWebhook,
  github: verifyGitHubWebhook,
  generic: verifyGenericWebhook,
};

export interface HttpRoutesOptions {
  registry: Pick<Registry, 'all' | 'status'>;
  metrics: ServerMetrics;
  logger: Logger;
  /** True once state is loaded and the listener is up. */
  ready: () => boolean;
  /** Fetch a project now (GitSource.refresh). */
  refresh: (project: string) => Promise<void>;
  webhookSecret?: string;
  adminToken?: string;
  isConnected: (agentId: string) => boolean;
}

/** Builds the request handler for the HTTP(S) server. */
export function createHttpHandler(options: HttpRoutesOptions): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    route(options, req, res).catch((err: unknown) => {
      options.logger.error({ err: errorMessage(err), path: req.url }, 'http handler failed');
      if (!res.headersSent) reply(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  };
}

async function route(options: HttpRoutesOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://x');
  const path = url.pathname;
  if (req.method === 'GET' && path === '/healthz') return text(res, 200, 'ok\n');
  if (req.method === 'GET' && path === '/readyz') return options.ready() ? text(res, 200, 'ready\n') : text(res, 503, 'not ready\n');
  if (req.method === 'GET' && path === '/metrics') {
    const body = await options.metrics.registry.metrics();
    res.writeHead(200, { 'content-type': options.metrics.registry.contentType });
    res.end(body);
    return;
  }
  if (req.method === 'GET' && path === '/api/v1/agents') return agentsApi(options, req, res);
  const hook = /^\/api\/v1\/webhooks\/([a-z]+)$/.exec(path);
  if (hook && VERIFIERS[hook[1]]) {
    if (req.method !== 'POST') return reply(res, 405, { error: 'use POST' });
    return webhook(options, hook[1], req, res);
  }
  reply(res, 404, { error: 'not found' });
}

function agentsApi(options: HttpRoutesOptions, req: IncomingMessage, res: ServerResponse): void {
  if (!options.adminToken) return reply(res, 404, { error: 'status API disabled (start the server with --admin-token-file)' });
  const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!match || !secretEquals(match[1], options.adminToken)) return reply(res, 401, { error: 'unauthorized' });
  const agents = options.registry.all().map((a) => {
    const { publicKey: _omit, ...record } = a;
    return { ...record, status: { ...options.registry.status(a.id), connected: options.isConnected(a.id) } };
  });
  reply(res, 200, { agents });
}

async function webhook(options: HttpRoutesOptions, source: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { metrics, logger } = options;
  if (!options.webhookSecret) {
    metrics.webhooks.inc({ source, result: 'disabled' });
    return reply(res, 404, { error: 'webhooks disabled (start the server with --webhook-secret-file)' });
  }
  const body = await readBody(req, MAX_WEBHOOK_BODY);
  if (!body) {
    metrics.webhooks.inc({ source, result: 'too-large' });
    // The rest of the body is not read: close the connection once the answer is out.
    res.setHeader('connection', 'close');
    return reply(res, 413, { error: `body larger than ${MAX_WEBHOOK_BODY} bytes` });
  }
  const result = VERIFIERS[source](req.headers, body, options.webhookSecret);
  if (!result.ok) {
    metrics.webhooks.inc({ source, result: result.error.code });
    logger.warn({ source, code: result.error.code, reason: result.error.message, remote: req.socket.remoteAddress }, 'webhook refused');
    return reply(res, result.error.status, { error: result.error.status === 401 ? 'unauthorized' : result.error.message });
  }
  metrics.webhooks.inc({ source, result: 'accepted' });
  logger.info({ source, project: result.project }, 'webhook accepted');
  reply(res, 202, { project: result.project, refresh: 'started' });
  // Not timed here: the Git source times each check it runs (serve's onCheck), webhook or poll.
  options.refresh(result.project).catch((err: unknown) => {
    logger.warn({ project: result.project, err: errorMessage(err) }, 'webhook refresh failed');
  });
}

/**
 * Reads a body up to `limit` bytes; undefined as soon as it is larger. The request is not
 * destroyed then (that would also close the socket before the caller's 413 is written); its
 * remaining chunks are dropped unread.
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        req.off('data', onData);
        req.resume();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body) + '\n');
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain' });
  res.end(body);
}
