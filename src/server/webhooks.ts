/**
 * Webhook verification: pure functions that decide whether a push notification is genuine and
 * which project it names, so the HTTP layer can call `GitSource.refresh(project)`.
 *
 * Three shapes are understood:
 * - GitLab push events: the `X-Gitlab-Token` header equals the shared secret;
 *   the project is `project.path_with_namespace`.
 * - GitHub-style push events (also Gitea, Forgejo): `X-Hub-Signature-256: sha256=<hex>` is an
 *   HMAC-SHA256 of the raw body with the secret; the project is `repository.full_name`.
 * - A generic POST `{"project": "group/name"}` with `Authorization: Bearer <secret>`.
 *
 * Secrets are compared in constant time and never appear in an error.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export type Headers = Record<string, string | string[] | undefined>;

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

const fail = (code: WebhookErrorCode, message: string): WebhookResult => ({
  ok: false,
  error: { code, status: code === 'WEBHOOK_UNAUTHORIZED' ? 401 : code === 'WEBHOOK_BAD_PAYLOAD' ? 400 : 202, message },
});

function parseJson(body: Buffer | string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
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

const GITLAB_PUSH_EVENTS = new Set(['Push Hook', 'Tag Push Hook', 'System Hook']);

/** A GitLab push (or tag push) event: `X-Gitlab-Token` must equal the secret. */
export function verifyGitLabWebhook(headers: Headers, body: Buffer | string, secret: string): WebhookResult {
  const token = header(headers, 'x-gitlab-token');
  if (token === undefined || !secretEquals(token, secret)) return fail('WEBHOOK_UNAUTHORIZED', 'GitLab webhook: missing or wrong X-Gitlab-Token');
  const event = header(headers, 'x-gitlab-event');
  if (event !== undefined && !GITLAB_PUSH_EVENTS.has(event)) return fail('WEBHOOK_IGNORED', `GitLab webhook: event "${event}" is not a push`);
  const payload = parseJson(body);
  if (!payload) return fail('WEBHOOK_BAD_PAYLOAD', 'GitLab webhook: body is not a JSON object');
  const kind = payload.object_kind ?? payload.event_name;
  if (kind !== undefined && kind !== 'push' && kind !== 'tag_push') return fail('WEBHOOK_IGNORED', `GitLab webhook: event "${String(kind)}" is not a push`);
  const project = stringAt(payload, 'project', 'path_with_namespace');
  if (!project) return fail('WEBHOOK_BAD_PAYLOAD', 'GitLab webhook: project.path_with_namespace is missing');
  return { ok: true, project };
}

/** A GitHub-style push event: `X-Hub-Signature-256` must be the HMAC-SHA256 of the raw body. */
export function verifyGitHubWebhook(headers: Headers, body: Buffer | string, secret: string): WebhookResult {
  const signature = header(headers, 'x-hub-signature-256');
  if (!signature || !signature.startsWith('sha256=')) return fail('WEBHOOK_UNAUTHORIZED', 'GitHub webhook: missing X-Hub-Signature-256');
  const given = Buffer.from(signature.slice('sha256='.length), 'hex');
  const expected = createHmac('sha256', secret).update(body).digest();
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return fail('WEBHOOK_UNAUTHORIZED', 'GitHub webhook: signature does not match the body');
  const event = header(headers, 'x-github-event');
  if (event !== undefined && event !== 'push') return fail('WEBHOOK_IGNORED', `GitHub webhook: event "${event}" is not a push`);
  const payload = parseJson(body);
  if (!payload) return fail('WEBHOOK_BAD_PAYLOAD', 'GitHub webhook: body is not a JSON object');
  const project = stringAt(payload, 'repository', 'full_name');
  if (!project) return fail('WEBHOOK_BAD_PAYLOAD', 'GitHub webhook: repository.full_name is missing');
  return { ok: true, project };
}

/** A plain authenticated request to refresh a project: `Authorization: Bearer <secret>`, body `{"project": "group/name"}`. */
export function verifyGenericWebhook(headers: Headers, body: Buffer | string, secret: string): WebhookResult {
  const auth = header(headers, 'authorization') ?? '';
  const match = /^Bearer\s+(.+)$/i.exec(auth);
  if (!match || !secretEquals(match[1].trim(), secret)) return fail('WEBHOOK_UNAUTHORIZED', 'refresh webhook: missing or wrong bearer secret');
  const payload = parseJson(body);
  if (!payload) return fail('WEBHOOK_BAD_PAYLOAD', 'refresh webhook: body is not a JSON object');
  const project = payload.project;
  if (typeof project !== 'string' || !/^[^\s/][^\s]*$/.test(project) || project.includes('..')) {
    return fail('WEBHOOK_BAD_PAYLOAD', 'refresh webhook: body must be {"project": "group/name"}');
  }
  return { ok: true, project: project.replace(/\.git$/, '') };
}
