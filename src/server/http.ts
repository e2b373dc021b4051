/**
 * The server's plain HTTP routes. Which ones a listener serves is its `routes` set:
 *
 * - `GET /healthz`: the process is up (every set).
 * - `GET /readyz`: state is loaded and the listener is up (every set).
 * - `GET /metrics`: Prometheus text (`all`, `ops`).
 * - `GET /api/v1/agents`: JSON status of every agent (admin bearer token, compared in constant
 *   time) (`all`, `ops`): what `agent list -o json` shows, health per project included (`status.health`).
 * - `POST /api/v1/webhooks/gitlab|github|generic`: verified push notifications that make the
 *   server fetch the named project at once instead of waiting for the next poll (`all`, `agents`).
 *
 * `all` is the agents' port when there is no `--metrics-listen`; with it, the agents' port serves
 * `agents` and the metrics listener `ops`, so project names and agent status stay off the port
 * agents (and the Internet) reach.
 *
 * Webhooks are authenticated before their body costs anything: header secrets are checked before
 * a byte is read, GitHub's HMAC is computed as the body streams in, at most `maxBodies` unproven
 * bodies are read at once (and as many from senders a header secret proved), each within a size
 * limit and a deadline, a refused request's connection is closed rather than drained, an address
 * that keeps failing is answered 429 for the rest of its minute, and refusals are logged as one
 * aggregated line per interval. Errors answer with a short JSON `{error}` that never echoes a
 * secret.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { clientAddress, type TrustedProxies } from './client-address.js';
import type { ServerMetrics } from './metrics.js';
import type { Registry } from './registry.js';
import {
  FailureLimiter,
  RefusalLog,
  checkWebhookHeaders,
  isWebhookSource,
  secretEquals,
  webhookProject,
  type BodyCheck,
  type HeaderCheck,
  type RefusalSummary,
  type WebhookSource,
} from './webhooks.js';

export interface WebhookLimits {
  /** Largest body read (GitLab and GitHub push payloads of a few hundred commits fit). */
  maxBodyBytes: number;
  /**
   * Bodies read at once, counted apart for senders proven by a header secret (GitLab, generic)
   * and for those that are not yet (GitHub-style), so unproven ones cannot crowd out a real
   * push; more are answered 503 with Retry-After.
   */
  maxBodies: number;
  /** A body must arrive within this; slower ones are answered 408. */
  bodyTimeoutMs: number;
  /** Refused requests (401, 408, 413) per address and minute before it is answered 429. */
  failuresPerMinute: number;
  /** At most one `webhooks refused` line per interval. */
  logIntervalMs: number;
}

export const DEFAULT_WEBHOOK_LIMITS: Readonly<WebhookLimits> = Object.freeze({
  maxBodyBytes: 5 * 1024 * 1024,
  maxBodies: 8,
  bodyTimeoutMs: 10_000,
  failuresPerMinute: 20,
  logIntervalMs: 60_000,
});

export type RouteSet = 'all' | 'agents' | 'ops';

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
  /** The routes this listener serves; `all` by default. */
  routes?: RouteSet;
  webhookLimits?: Partial<WebhookLimits>;
  /** --trusted-proxy: for requests from these, the failure limit counts the X-Forwarded-For client. */
  trustedProxies?: TrustedProxies;
  /** The clock of the failure limit and the refusal log (tests). */
  now?: () => number;
}

export interface HttpHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  /**
   * For the server's `checkContinue` event: `100 Continue` is sent only once a body is going to
   * be read, so a client that waits for it never sends a body that would be refused.
   */
  checkContinue(req: IncomingMessage, res: ServerResponse): void;
  /** Logs the refusals not reported yet and stops the log timer. */
  close(): void;
}

interface Context extends HttpRoutesOptions {
  routes: RouteSet;
  limits: WebhookLimits;
  limiter: FailureLimiter;
  refusals: RefusalLog;
  /** Bodies being read, by whether the headers proved the sender. */
  bodiesInFlight: { proven: number; unproven: number };
  flushTimer?: NodeJS.Timeout;
}

/** Builds the request handler for one HTTP(S) listener. */
export function createHttpHandler(options: HttpRoutesOptions): HttpHandler {
  const now = options.now ?? Date.now;
  const limits = { ...DEFAULT_WEBHOOK_LIMITS, ...options.webhookLimits };
  const ctx: Context = {
    ...options,
    routes: options.routes ?? 'all',
    limits,
    bodiesInFlight: { proven: 0, unproven: 0 },
    limiter: new FailureLimiter(limits.failuresPerMinute, 60_000, now),
    refusals: new RefusalLog(limits.logIntervalMs, now),
  };
  const handle = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void => {
    route(ctx, req, res, expectsContinue).catch((err: unknown) => {
      ctx.logger.error({ err: errorMessage(err), path: req.url?.slice(0, 200) }, 'http handler failed');
      if (!res.headersSent) reply(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  };
  const handler = ((req: IncomingMessage, res: ServerResponse) => handle(req, res, false)) as HttpHandler;
  handler.checkContinue = (req, res) => handle(req, res, true);
  handler.close = () => {
    clearTimeout(ctx.flushTimer);
    logRefusals(ctx, ctx.refusals.flush());
  };
  return handler;
}

async function route(ctx: Context, req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://x');
  const path = url.pathname;
  if (req.method === 'GET' && path === '/healthz') return text(res, 200, 'ok\n');
  if (req.method === 'GET' && path === '/readyz')
    return ctx.ready() ? text(res, 200, 'ready\n') : text(res, 503, 'not ready\n');
  if (ctx.routes !== 'agents') {
    if (req.method === 'GET' && path === '/metrics') {
      const body = await ctx.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': ctx.metrics.registry.contentType });
      res.end(body);
      return;
    }
    if (req.method === 'GET' && path === '/api/v1/agents') return agentsApi(ctx, req, res);
  }
  const hook = ctx.routes !== 'ops' ? /^\/api\/v1\/webhooks\/([a-z]+)$/.exec(path) : null;
  if (hook && isWebhookSource(hook[1])) {
    if (req.method !== 'POST') return reply(res, 405, { error: 'use POST' });
    return webhook(ctx, hook[1], req, res, expectsContinue);
  }
  reply(res, 404, { error: 'not found' });
}

function agentsApi(ctx: Context, req: IncomingMessage, res: ServerResponse): void {
  if (!ctx.adminToken)
    return reply(res, 404, { error: 'status API disabled (start the server with --admin-token-file)' });
  const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!match || !secretEquals(match[1], ctx.adminToken)) return reply(res, 401, { error: 'unauthorized' });
  const agents = ctx.registry.all().map((a) => {
    const { publicKey: _omit, ...record } = a;
    return { ...record, status: { ...ctx.registry.status(a.id), connected: ctx.isConnected(a.id) } };
  });
  reply(res, 200, { agents });
}

/**
 * GitLab's token and the generic bearer secret prove the sender from the headers; GitHub's signature needs the body.
 */
function provenByHeaders(source: WebhookSource, check: HeaderCheck): boolean {
  return source !== 'github' && (check.ok || check.error.code !== 'WEBHOOK_UNAUTHORIZED');
}

async function webhook(
  ctx: Context,
  source: WebhookSource,
  req: IncomingMessage,
  res: ServerResponse,
  expectsContinue: boolean,
): Promise<void> {
  const { metrics, logger, limits } = ctx;
  const secret = ctx.webhookSecret;
  if (!secret) {
    metrics.webhooks.inc({ source, result: 'disabled' });
    return closeWith(res, 404, { error: 'webhooks disabled (start the server with --webhook-secret-file)' });
  }
  const remote = ctx.trustedProxies
    ? clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], ctx.trustedProxies)
    : (req.socket.remoteAddress ?? 'unknown');
  const check = checkWebhookHeaders(source, req.headers, secret);
  const retryAfterMs = ctx.limiter.retryAfterMs(remote);
  if (retryAfterMs > 0 && !provenByHeaders(source, check)) {
    refused(ctx, source, remote, 'rate-limited', false);
    return closeWith(
      res,
      429,
      { error: 'too many refused webhook requests from this address' },
      { 'retry-after': String(Math.ceil(retryAfterMs / 1000)) },
    );
  }
  if (!check.ok)
    return answerError(ctx, source, remote, res, check.error.code, check.error.status, check.error.message);
  const declared = Number(req.headers['content-length']);
  if (declared > limits.maxBodyBytes) {
    refused(ctx, source, remote, 'too-large', true);
    return closeWith(res, 413, { error: `body larger than ${limits.maxBodyBytes} bytes` });
  }
  const slot = provenByHeaders(source, check) ? 'proven' : 'unproven';
  if (ctx.bodiesInFlight[slot] >= limits.maxBodies) {
    refused(ctx, source, remote, 'busy', false);
    return closeWith(res, 503, { error: 'too many webhook bodies being read; retry' }, { 'retry-after': '1' });
  }
  ctx.bodiesInFlight[slot]++;
  let body: BodyRead;
  try {
    if (expectsContinue) res.writeContinue();
    body = await readBody(req, check.body, limits.maxBodyBytes, limits.bodyTimeoutMs);
  } finally {
    ctx.bodiesInFlight[slot]--;
  }
  if (body.kind === 'aborted') {
    metrics.webhooks.inc({ source, result: 'aborted' });
    return;
  }
  if (body.kind === 'too-large') {
    refused(ctx, source, remote, 'too-large', true);
    return closeWith(res, 413, { error: `body larger than ${limits.maxBodyBytes} bytes` });
  }
  if (body.kind === 'timeout') {
    refused(ctx, source, remote, 'timeout', true);
    return closeWith(res, 408, { error: `body not received within ${limits.bodyTimeoutMs} ms` });
  }
  const bad = check.body.verify();
  if (bad) return answerError(ctx, source, remote, res, bad.code, bad.status, bad.message);
  const result = webhookProject(source, Buffer.concat(body.chunks));
  if (!result.ok)
    return answerError(ctx, source, remote, res, result.error.code, result.error.status, result.error.message);
  metrics.webhooks.inc({ source, result: 'accepted' });
  logger.info({ source, project: result.project }, 'webhook accepted');
  reply(res, 202, { project: result.project, refresh: 'started' });
  // Not timed here: the Git source times each check it runs (serve's onCheck), webhook or poll.
  ctx.refresh(result.project).catch((err: unknown) => {
    logger.warn({ project: result.project, err: errorMessage(err) }, 'webhook refresh failed');
  });
}

function answerError(
  ctx: Context,
  source: WebhookSource,
  remote: string,
  res: ServerResponse,
  code: string,
  status: number,
  message: string,
): void {
  if (status === 202) {
    // Authentic, just not a push (a ping): nothing to count against the sender.
    ctx.metrics.webhooks.inc({ source, result: code });
    ctx.logger.debug({ source, reason: message }, 'webhook ignored');
    return closeWith(res, 202, { error: message });
  }
  refused(ctx, source, remote, code, status === 401);
  // 401 says nothing more: which part was wrong is for the log, not for whoever guesses.
  closeWith(res, status, { error: status === 401 ? 'unauthorized' : message });
}

/** Counts a refused request in the metric, the address's failure window (when it counts) and the aggregated log. */
function refused(ctx: Context, source: WebhookSource, remote: string, reason: string, countsAsFailure: boolean): void {
  ctx.metrics.webhooks.inc({ source, result: reason });
  if (countsAsFailure) ctx.limiter.fail(remote);
  const summary = ctx.refusals.add(`${source}:${reason}`, remote);
  if (summary) {
    clearTimeout(ctx.flushTimer);
    ctx.flushTimer = undefined;
    return logRefusals(ctx, summary);
  }
  scheduleFlush(ctx);
}

/** Reports pending refusals when their interval ends, even if no further request comes. */
function scheduleFlush(ctx: Context): void {
  const due = ctx.refusals.dueInMs();
  if (ctx.flushTimer || due === undefined) return;
  ctx.flushTimer = setTimeout(() => {
    ctx.flushTimer = undefined;
    if ((ctx.refusals.dueInMs() ?? 0) > 0) return scheduleFlush(ctx);
    logRefusals(ctx, ctx.refusals.flush());
  }, due);
  ctx.flushTimer.unref();
}

function logRefusals(ctx: Context, summary: RefusalSummary | undefined): void {
  if (summary) ctx.logger.warn({ ...summary }, 'webhooks refused');
}

type BodyRead = { kind: 'ok'; chunks: Buffer[] } | { kind: 'too-large' } | { kind: 'timeout' } | { kind: 'aborted' };

/**
 * Reads a body of at most `limit` bytes within `timeoutMs`, handing each chunk to `check` as it
 * arrives. Past the limit or the deadline it stops reading and pauses the request (the socket
 * stops being read; the caller answers with `Connection: close`, so the rest is never drained).
 */
function readBody(req: IncomingMessage, check: BodyCheck, limit: number, timeoutMs: number): Promise<BodyRead> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: BodyRead): void => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onAbort);
      req.off('close', onClose);
      if (result.kind !== 'ok') {
        chunks.length = 0;
        req.pause();
      }
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) return finish({ kind: 'too-large' });
      check.update(chunk);
      chunks.push(chunk);
    };
    const onEnd = (): void => finish({ kind: 'ok', chunks });
    const onAbort = (): void => finish({ kind: 'aborted' });
    const onClose = (): void => {
      if (!req.complete) onAbort();
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onAbort);
    req.on('close', onClose);
  });
}

/** Answers and closes the connection once the answer is out, so an unread body is never drained. */
function closeWith(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.shouldKeepAlive = false;
  res.writeHead(status, { 'content-type': 'application/json', connection: 'close', ...headers });
  res.end(JSON.stringify(body) + '\n');
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body) + '\n');
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain' });
  res.end(body);
}
