import { describe, expect, it } from '@jest/globals';
import { createHmac } from 'node:crypto';
import {
  FailureLimiter,
  RefusalLog,
  checkWebhookHeaders,
  webhookProject,
  type Headers,
  type WebhookResult,
  type WebhookSource,
} from './webhooks.js';

const SECRET = 'a-long-shared-webhook-secret';
const gitlabBody = JSON.stringify({ object_kind: 'push', project: { path_with_namespace: 'group/gitops-project' } });
const githubBody = JSON.stringify({ ref: 'refs/heads/main', repository: { full_name: 'org/repo' } });
const sign = (body: string, secret = SECRET) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

/** What the HTTP layer does: headers, then the body in chunks of `chunk` bytes, then the payload. */
function verify(source: WebhookSource, headers: Headers, body: string, chunk = 7): WebhookResult {
  const check = checkWebhookHeaders(source, headers, SECRET);
  if (!check.ok) return check;
  const raw = Buffer.from(body);
  for (let i = 0; i < raw.length; i += chunk) check.body.update(raw.subarray(i, i + chunk));
  const bad = check.body.verify();
  return bad ? { ok: false, error: bad } : webhookProject(source, raw);
}

describe('GitLab webhooks', () => {
  it('returns the project of a push event carrying the right token', () => {
    expect(verify('gitlab', { 'x-gitlab-token': SECRET, 'x-gitlab-event': 'Push Hook' }, gitlabBody)).toEqual({
      ok: true,
      project: 'group/gitops-project',
    });
  });

  it('decides a missing, wrong or truncated token from the headers alone (401), without echoing it', () => {
    for (const headers of [
      {},
      { 'x-gitlab-token': 'wrong' },
      { 'x-gitlab-token': SECRET.slice(0, -1) },
      { 'X-Gitlab-Token': SECRET + 'x' },
    ]) {
      const r = checkWebhookHeaders('gitlab', headers, SECRET);
      expect(r).toMatchObject({ ok: false, error: { code: 'WEBHOOK_UNAUTHORIZED', status: 401 } });
      if (!r.ok) expect(r.error.message).not.toContain(SECRET.slice(0, 8));
    }
  });

  it('ignores events that are not pushes (from the header when it says so) and rejects payloads without a project', () => {
    expect(
      checkWebhookHeaders('gitlab', { 'x-gitlab-token': SECRET, 'x-gitlab-event': 'Issue Hook' }, SECRET),
    ).toMatchObject({ ok: false, error: { code: 'WEBHOOK_IGNORED', status: 202 } });
    expect(verify('gitlab', { 'x-gitlab-token': SECRET }, '{"object_kind":"merge_request"}')).toMatchObject({
      ok: false,
      error: { code: 'WEBHOOK_IGNORED' },
    });
    expect(verify('gitlab', { 'x-gitlab-token': SECRET }, '{"object_kind":"push"}')).toMatchObject({
      ok: false,
      error: { code: 'WEBHOOK_BAD_PAYLOAD' },
    });
    expect(verify('gitlab', { 'x-gitlab-token': SECRET }, 'not json')).toMatchObject({
      ok: false,
      error: { code: 'WEBHOOK_BAD_PAYLOAD', status: 400 },
    });
  });
});

describe('GitHub webhooks', () => {
  it('returns repository.full_name when the HMAC computed over the streamed chunks matches, whatever the chunk size', () => {
    for (const chunk of [1, 7, 64, 10_000]) {
      expect(
        verify('github', { 'x-hub-signature-256': sign(githubBody), 'x-github-event': 'push' }, githubBody, chunk),
      ).toEqual({ ok: true, project: 'org/repo' });
    }
  });

  it('refuses a missing or malformed signature header before the body is read', () => {
    const cases: Headers[] = [
      {},
      { 'x-hub-signature-256': 'sha256=zz' },
      { 'x-hub-signature-256': 'sha256=' + 'a'.repeat(63) },
      { 'x-hub-signature-256': 'sha256=' + 'a'.repeat(65) },
      { 'x-hub-signature-256': sign(githubBody).replace('sha256=', 'sha1=') },
      { 'x-hub-signature-256': ` ${sign(githubBody)}` },
    ];
    for (const headers of cases) {
      expect(checkWebhookHeaders('github', headers, SECRET)).toMatchObject({
        ok: false,
        error: { code: 'WEBHOOK_UNAUTHORIZED', status: 401 },
      });
    }
  });

  it('refuses a well-formed signature made with another secret or over another body once the body has streamed', () => {
    for (const headers of [
      { 'x-hub-signature-256': sign(githubBody, 'other-secret') },
      { 'x-hub-signature-256': sign(githubBody + ' ') },
    ]) {
      expect(checkWebhookHeaders('github', headers, SECRET).ok).toBe(true);
      expect(verify('github', headers, githubBody)).toMatchObject({
        ok: false,
        error: { code: 'WEBHOOK_UNAUTHORIZED' },
      });
    }
  });

  it('ignores an authentic ping, but only after checking its signature', () => {
    expect(
      verify('github', { 'x-hub-signature-256': sign(githubBody), 'x-github-event': 'ping' }, githubBody),
    ).toMatchObject({ ok: false, error: { code: 'WEBHOOK_IGNORED' } });
    expect(
      verify('github', { 'x-hub-signature-256': sign(githubBody, 'guess'), 'x-github-event': 'ping' }, githubBody),
    ).toMatchObject({ ok: false, error: { code: 'WEBHOOK_UNAUTHORIZED' } });
  });
});

describe('generic webhooks', () => {
  it('returns the named project for the right bearer secret', () => {
    expect(verify('generic', { authorization: `Bearer ${SECRET}` }, '{"project":"group/name.git"}')).toEqual({
      ok: true,
      project: 'group/name',
    });
  });

  it('refuses a wrong secret or a basic credential from the headers, and a body without a usable project', () => {
    expect(checkWebhookHeaders('generic', { authorization: 'Bearer nope' }, SECRET)).toMatchObject({
      ok: false,
      error: { code: 'WEBHOOK_UNAUTHORIZED' },
    });
    expect(checkWebhookHeaders('generic', { authorization: `Basic ${SECRET}` }, SECRET)).toMatchObject({
      ok: false,
      error: { code: 'WEBHOOK_UNAUTHORIZED' },
    });
    for (const body of ['{}', '{"project":""}', '{"project":"../etc"}', '{"project":5}', '[]']) {
      expect(verify('generic', { authorization: `Bearer ${SECRET}` }, body)).toMatchObject({
        ok: false,
        error: { code: 'WEBHOOK_BAD_PAYLOAD' },
      });
    }
  });
});

describe('FailureLimiter', () => {
  it('limits an address after N failures in its minute, others not, and forgets it when the minute ends', () => {
    let now = 1_000;
    const limiter = new FailureLimiter(3, 60_000, () => now);
    for (let i = 0; i < 3; i++) {
      expect(limiter.retryAfterMs('10.0.0.1')).toBe(0);
      limiter.fail('10.0.0.1');
    }
    expect(limiter.retryAfterMs('10.0.0.1')).toBe(60_000);
    expect(limiter.retryAfterMs('10.0.0.2')).toBe(0);
    now += 59_000;
    expect(limiter.retryAfterMs('10.0.0.1')).toBe(1_000);
    now += 1_000;
    expect(limiter.retryAfterMs('10.0.0.1')).toBe(0);
    limiter.fail('10.0.0.1');
    expect(limiter.retryAfterMs('10.0.0.1')).toBe(0);
  });

  it('keeps at most maxAddresses windows, dropping expired ones first and then the oldest', () => {
    let now = 0;
    const limiter = new FailureLimiter(1, 60_000, () => now, 3);
    limiter.fail('a');
    now = 30_000;
    limiter.fail('b');
    limiter.fail('c');
    now = 61_000;
    limiter.fail('d');
    expect(limiter.size).toBe(3);
    expect(limiter.retryAfterMs('a')).toBe(0);
    limiter.fail('e');
    expect(limiter.size).toBe(3);
    expect(limiter.retryAfterMs('b')).toBe(0);
    for (const kept of ['c', 'd', 'e']) expect(limiter.retryAfterMs(kept)).toBeGreaterThan(0);
  });
});

describe('RefusalLog', () => {
  it('reports the first refusal at once, then at most one summary per interval with the counts', () => {
    let now = 0;
    const log = new RefusalLog(60_000, () => now);
    expect(log.add('gitlab:WEBHOOK_UNAUTHORIZED', '10.0.0.1')).toMatchObject({ count: 1 });
    expect(log.dueInMs()).toBeUndefined();
    for (let i = 0; i < 99; i++) {
      now += 100;
      expect(
        log.add(i % 3 ? 'gitlab:WEBHOOK_UNAUTHORIZED' : 'gitlab:rate-limited', i % 2 ? '10.0.0.1' : '10.0.0.2'),
      ).toBeUndefined();
    }
    expect(log.dueInMs()).toBe(60_000 - 9_900);
    now = 60_000;
    expect(log.add('github:busy', '10.0.0.3')).toEqual({
      count: 100,
      reasons: { 'gitlab:WEBHOOK_UNAUTHORIZED': 66, 'gitlab:rate-limited': 33, 'github:busy': 1 },
      remotes: { '10.0.0.2': 50, '10.0.0.1': 49, '10.0.0.3': 1 },
      fromOtherRemotes: 0,
      sinceMs: 59_900,
    });
    expect(log.flush()).toBeUndefined();
  });

  it('names the five busiest addresses and counts the rest, and flushes what is pending at shutdown', () => {
    let now = 0;
    const log = new RefusalLog(60_000, () => now);
    log.add('x', 'first');
    now = 1;
    for (let a = 0; a < 8; a++) for (let i = 0; i <= a; i++) log.add('generic:WEBHOOK_UNAUTHORIZED', `10.0.0.${a}`);
    const summary = log.flush();
    expect(summary?.count).toBe(36);
    expect(Object.keys(summary?.remotes ?? {})).toEqual(['10.0.0.7', '10.0.0.6', '10.0.0.5', '10.0.0.4', '10.0.0.3']);
    expect(summary?.fromOtherRemotes).toBe(1 + 2 + 3);
  });
});
