/**
 * Webhook verification: pure parts that decide whether a push notification is genuine and which
 * project it names, so the HTTP layer can call `GitSource.refresh(project)`, plus the bookkeeping
 * that keeps refused requests cheap (a per-address failure limit, one aggregated log line per
 * interval).
 *
 * Three shapes are understood:
 * - GitLab push events: the `X-Gitlab-Token` header equals the shared secret;
 *   the project is `project.path_with_namespace`.
 * - GitHub-style push events (also Gitea, Forgejo): `X-Hub-Signature-256: sha256=<hex>` is an
 *   HMAC-SHA256 of the raw body with the secret; the project is `repository.full_name`.
 * - A generic POST `{"project": "group/name"}` with `Authorization: Bearer <secret>`.
 *
 * Verification is split so that nothing unauthenticated is buffered: `checkWebhookHeaders` decides
 * from the headers alone (GitLab and generic secrets are checked there, before a byte of the body
 * is read; GitHub's signature header must at least be well-formed), `BodyCheck.update` sees each
 * chunk as it arrives (GitHub's HMAC is computed while streaming), and `webhookProject` parses a
 * body only after it was verified. Secrets are compared in constant time and never appear in an
 * error.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export type Headers = Record<string, string | string[] | undefined>;

export const WEBHOOK_SOURCES = ['gitlab', 'github', 'generic'] as const;
export type WebhookSource = (typeof WEBHOOK_SOURCES)[number];

export function isWebhookSource(text: string): text is WebhookSource {
  return (WEBHOOK_SOURCES as readonly string[]).includes(text);
}

export type WebhookErrorCode =
  /** No or wrong secret/signature: answer 401. */
  | 'WEBHOOK_UNAUTHORIZED'
  /** Authentic but not JSON, or without a project: answer 400. */
  | 'WEBHOOK_BAD_PAYLOAD'
  /** Authentic, but an event that cannot change a watched commit (a ping, an issue): answer 202. */
  | 'WEBHOOK_IGNORED';

export interface WebhookError {
  code: WebhookErrorCode;
  /** Suggested HTTP status for the reply. */
  status: 401 | 400 | 202;
  message: string;
}

export type WebhookResult = { ok: true; project: string } | { ok: false; error: WebhookError };

/** Sees the body chunk by chunk as it arrives; `verify` once it has ended. */
export interface BodyCheck {
  update(chunk: Buffer): void;
  /** undefined when the body is authentic. */
  verify(): WebhookError | undefined;
}

export type HeaderCheck = { ok: true; body: BodyCheck } | { ok: false; error: WebhookError };

/** Node lower-cases incoming header names; accept either case from other callers. */
function header(headers: Headers, name: string): string | undefined {
  const v = headers[name.toLowerCase()] ?? headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Constant-time equality that also hides the length of the secret. */
export function secretEquals(given: string, secret: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(secret).digest();
  return timingSafeEqual(a, b);
}

const STATUS: Record<WebhookErrorCode, WebhookError['status']> = {
  WEBHOOK_UNAUTHORIZED: 401,
  WEBHOOK_BAD_PAYLOAD: 400,
  WEBHOOK_IGNORED: 202,
};
const error = (code: WebhookErrorCode, message: string): WebhookError => ({ code, status: STATUS[code], message });
const refuse = (code: WebhookErrorCode, message: string): { ok: false; error: WebhookError } => ({
  ok: false,
  error: error(code, message),
});

/** A header secret was checked already: the body needs no further proof. */
const TRUSTED_BODY: BodyCheck = { update: () => undefined, verify: () => undefined };

const GITLAB_PUSH_EVENTS = new Set(['Push Hook', 'Tag Push Hook', 'System Hook']);
const GITHUB_SIGNATURE = /^sha256=([0-9a-fA-F]{64})$/;

/**
 * Everything that can be decided before the body is read. GitLab's token and the generic bearer
 * secret are checked here; for GitHub the signature header must be present and well-formed, and
 * the returned BodyCheck computes the HMAC of the chunks it is given.
 */
export function checkWebhookHeaders(source: WebhookSource, headers: Headers, secret: string): HeaderCheck {
  switch (source) {
    case 'gitlab': {
      const token = header(headers, 'x-gitlab-token');
      if (token === undefined || !secretEquals(token, secret))
        return refuse('WEBHOOK_UNAUTHORIZED', 'GitLab webhook: missing or wrong X-Gitlab-Token');
      const event = header(headers, 'x-gitlab-event');
      if (event !== undefined && !GITLAB_PUSH_EVENTS.has(event))
        return refuse('WEBHOOK_IGNORED', `GitLab webhook: event "${event.slice(0, 100)}" is not a push`);
      return { ok: true, body: TRUSTED_BODY };
    }
    case 'generic': {
      const match = /^Bearer\s+(.+)$/i.exec(header(headers, 'authorization') ?? '');
      if (!match || !secretEquals(match[1].trim(), secret))
        return refuse('WEBHOOK_UNAUTHORIZED', 'refresh webhook: missing or wrong bearer secret');
      return { ok: true, body: TRUSTED_BODY };
    }
    case 'github': {
      const match = GITHUB_SIGNATURE.exec(header(headers, 'x-hub-signature-256') ?? '');
      if (!match)
        return refuse(
          'WEBHOOK_UNAUTHORIZED',
          'GitHub webhook: missing or malformed X-Hub-Signature-256 (want sha256=<64 hex digits>)',
        );
      return { ok: true, body: hmacCheck(Buffer.from(match[1], 'hex'), secret, header(headers, 'x-github-event')) };
    }
  }
}

/** GitHub: HMAC-SHA256 of the raw body, fed as it streams in; the event is judged once it is authentic. */
function hmacCheck(given: Buffer, secret: string, event: string | undefined): BodyCheck {
  const hmac = createHmac('sha256', secret);
  return {
    update: (chunk) => {
      hmac.update(chunk);
    },
    verify: () => {
      if (!timingSafeEqual(given, hmac.digest()))
        return error('WEBHOOK_UNAUTHORIZED', 'GitHub webhook: signature does not match the body');
      if (event !== undefined && event !== 'push')
        return error('WEBHOOK_IGNORED', `GitHub webhook: event "${event.slice(0, 100)}" is not a push`);
      return undefined;
    },
  };
}

function parseJson(body: Buffer): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function stringAt(obj: Record<string, unknown>, key: string, field: string): string | undefined {
  const inner = obj[key];
  if (inner === null || typeof inner !== 'object') return undefined;
  const v = (inner as Record<string, unknown>)[field];
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/** The project named by an authentic body (call only after its BodyCheck verified). */
export function webhookProject(source: WebhookSource, body: Buffer): WebhookResult {
  const payload = parseJson(body);
  switch (source) {
    case 'gitlab': {
      if (!payload) return refuse('WEBHOOK_BAD_PAYLOAD', 'GitLab webhook: body is not a JSON object');
      const kind = payload.object_kind ?? payload.event_name;
      if (kind !== undefined && kind !== 'push' && kind !== 'tag_push')
        return refuse('WEBHOOK_IGNORED', `GitLab webhook: event "${String(kind).slice(0, 100)}" is not a push`);
      const project = stringAt(payload, 'project', 'path_with_namespace');
      if (!project) return refuse('WEBHOOK_BAD_PAYLOAD', 'GitLab webhook: project.path_with_namespace is missing');
      return { ok: true, project };
    }
    case 'github': {
      if (!payload) return refuse('WEBHOOK_BAD_PAYLOAD', 'GitHub webhook: body is not a JSON object');
      const project = stringAt(payload, 'repository', 'full_name');
      if (!project) return refuse('WEBHOOK_BAD_PAYLOAD', 'GitHub webhook: repository.full_name is missing');
      return { ok: true, project };
    }
    case 'generic': {
      if (!payload) return refuse('WEBHOOK_BAD_PAYLOAD', 'refresh webhook: body is not a JSON object');
      const project = payload.project;
      if (typeof project !== 'string' || !/^[^\s/][^\s]*$/.test(project) || project.includes('..')) {
        return refuse('WEBHOOK_BAD_PAYLOAD', 'refresh webhook: body must be {"project": "group/name"}');
      }
      return { ok: true, project: project.replace(/\.git$/, '') };
    }
  }
}

/**
 * Failed webhook requests per source address in fixed one-minute windows: after `limit` failures
 * the address is answered 429 until its window ends. Bounded: at most `maxAddresses` windows are
 * kept (expired ones are dropped first, then the oldest).
 */
export class FailureLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
    private readonly maxAddresses = 10_000,
  ) {}

  /** Milliseconds until `address` may try again; 0 when it is not limited. */
  retryAfterMs(address: string): number {
    const w = this.windows.get(address);
    if (!w) return 0;
    const left = w.start + this.windowMs - this.now();
    if (left <= 0) {
      this.windows.delete(address);
      return 0;
    }
    return w.count >= this.limit ? left : 0;
  }

  fail(address: string): void {
    const now = this.now();
    let w = this.windows.get(address);
    if (!w || now - w.start >= this.windowMs) {
      this.windows.delete(address);
      if (this.windows.size >= this.maxAddresses) this.prune(now);
      w = { start: now, count: 0 };
      this.windows.set(address, w);
    }
    w.count++;
  }

  get size(): number {
    return this.windows.size;
  }

  private prune(now: number): void {
    for (const [address, w] of this.windows) if (now - w.start >= this.windowMs) this.windows.delete(address);
    // Insertion order is start order: the first entries are the oldest windows.
    for (const address of this.windows.keys()) {
      if (this.windows.size < this.maxAddresses) break;
      this.windows.delete(address);
    }
  }
}

/** One aggregated `webhooks refused` line: how many, why, and from where (the busiest addresses). */
export interface RefusalSummary {
  count: number;
  reasons: Record<string, number>;
  remotes: Record<string, number>;
  /** Refusals from addresses not named in `remotes`. */
  fromOtherRemotes: number;
  sinceMs: number;
}

const MAX_REMOTES_LOGGED = 5;
const MAX_REMOTES_COUNTED = 1_000;

/**
 * Collects refused requests and hands out at most one summary per interval: the first refusal
 * after a quiet interval is reported at once (so a misconfigured secret shows up immediately),
 * later ones are counted and reported when the interval ends (`due`) or at shutdown (`flush`).
 */
export class RefusalLog {
  private count = 0;
  private reasons = new Map<string, number>();
  private remotes = new Map<string, number>();
  private since = 0;
  private lastReport = -Infinity;

  constructor(
    private readonly intervalMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one refusal; a summary when it is time to report one. */
  add(reason: string, remote: string): RefusalSummary | undefined {
    if (this.count === 0) this.since = this.now();
    this.count++;
    this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + 1);
    const seen = this.remotes.get(remote);
    if (seen !== undefined || this.remotes.size < MAX_REMOTES_COUNTED) this.remotes.set(remote, (seen ?? 0) + 1);
    return this.now() - this.lastReport >= this.intervalMs ? this.flush() : undefined;
  }

  /** Milliseconds until the pending refusals are due; undefined when nothing is pending. */
  dueInMs(): number | undefined {
    return this.count === 0 ? undefined : Math.max(0, this.lastReport + this.intervalMs - this.now());
  }

  /** The pending refusals as one summary (undefined when none), and a new interval. */
  flush(): RefusalSummary | undefined {
    if (this.count === 0) return undefined;
    const now = this.now();
    const busiest = [...this.remotes].sort((a, b) => b[1] - a[1]).slice(0, MAX_REMOTES_LOGGED);
    const named = busiest.reduce((sum, [, n]) => sum + n, 0);
    const summary: RefusalSummary = {
      count: this.count,
      reasons: Object.fromEntries(this.reasons),
      remotes: Object.fromEntries(busiest),
      fromOtherRemotes: this.count - named,
      sinceMs: now - this.since,
    };
    this.count = 0;
    this.reasons = new Map();
    this.remotes = new Map();
    this.lastReport = now;
    return summary;
  }
}
