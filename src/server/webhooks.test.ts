import { describe, expect, it } from '@jest/globals';
import { createHmac } from 'node:crypto';
import { verifyGenericWebhook, verifyGitHubWebhook, verifyGitLabWebhook } from './webhooks.js';

const SECRET = 'a-long-shared-webhook-secret';
const gitlabBody = JSON.stringify({ object_kind: 'push', project: { path_with_namespace: 'group/gitops-project' } });
const githubBody = JSON.stringify({ ref: 'refs/heads/main', repository: { full_name: 'org/repo' } });
const sign = (body: string, secret = SECRET) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

describe('verifyGitLabWebhook', () => {
  it('returns the project of a push event carrying the right token', () => {
    expect(verifyGitLabWebhook({ 'x-gitlab-token': SECRET, 'x-gitlab-event': 'Push Hook' }, Buffer.from(gitlabBody), SECRET)).toEqual({ ok: true, project: 'group/gitops-project' });
  });

  it('answers 401 for a missing, wrong or truncated token, without echoing it', () => {
    for (const headers of [{}, { 'x-gitlab-token': 'wrong' }, { 'x-gitlab-token': SECRET.slice(0, -1) }]) {
      const r = verifyGitLabWebhook(headers, gitlabBody, SECRET);
      expect(r).toMatchObject({ ok: false, error: { code: 'WEBHOOK_UNAUTHORIZED', status: 401 } });
      if (!r.ok) expect(r.error.message).not.toContain(SECRET.slice(0, 8));
    }
  });

  it('ignores events that are not pushes and rejects payloads without a project', () => {
    expect(verifyGitLabWebhook({ 'x-gitlab-token': SECRET, 'x-gitlab-event': 'Issue Hook' }, gitlabBody, SECRET)).toMatchObject({ ok: false, error: { code: 'WEBHOOK_IGNORED', status: 202 } });
    expect(verifyGitLabWebhook({ 'x-gitlab-token': SECRET }, '{"object_kind":"push"}', SECRET)).toMatchObject({ ok: false, error: { code: 'WEBHOOK_BAD_PAYLOAD' } });
    expect(verifyGitLabWebhook({ 'x-gitlab-token': SECRET }, 'not json', SECRET)).toMatchObject({ ok: false, error: { code: 'WEBHOOK_BAD_PAYLOAD', status: 400 } });
  });
});

describe('verifyGitHubWebhook', () => {
  it('returns repository.full_name when the HMAC of the raw body matches', () => {
    expect(verifyGitHubWebhook({ 'x-hub-signature-256': sign(githubBody), 'x-github-event': 'push' }, Buffer.from(githubBody), SECRET)).toEqual({ ok: true, project: 'org/repo' });
  });

  it('rejects a signature made with another secret, over another body, malformed or missing', () => {
    const cases = [
      { 'x-hub-signature-256': sign(githubBody, 'other-secret') },
      { 'x-hub-signature-256': sign(githubBody + ' ') },
      { 'x-hub-signature-256': 'sha256=zz' },
      { 'x-hub-signature-256': sign(githubBody).replace('sha256=', 'sha1=') },
      {},
    ];
    for (const headers of cases) {
      expect(verifyGitHubWebhook(headers, githubBody, SECRET)).toMatchObject({ ok: false, error: { code: 'WEBHOOK_UNAUTHORIZED' } });
    }
  });

  it('ignores a ping event', () => {
    expect(verifyGitHubWebhook({ 'x-hub-signature-256': sign(githubBody), 'x-github-event': 'ping' }, githubBody, SECRET)).toMatchObject({ ok: false, error: { code: 'WEBHOOK_IGNORED' } });
  });
});

describe('verifyGenericWebhook', () => {
  it('returns the named project for the right bearer secret', () => {
    expect(verifyGenericWebhook({ authorization: `Bearer ${SECRET}` }, '{"project":"group/name"}', SECRET)).toEqual({ ok: true, project: 'group/name' });
  });

  it('rejects a wrong secret, a basic credential and a body without a usable project', () => {
    expect(verifyGenericWebhook({ authorization: 'Bearer nope' }, '{"project":"a/b"}', SECRET)).toMatchObject({ ok: false, error: { code: 'WEBHOOK_UNAUTHORIZED' } });
    expect(verifyGenericWebhook({ authorization: `Basic ${SECRET}` }, '{"project":"a/b"}', SECRET)).toMatchObject({ ok: false, error: { code: 'WEBHOOK_UNAUTHORIZED' } });
    for (const body of ['{}', '{"project":""}', '{"project":"../etc"}', '{"project":5}', '[]']) {
      expect(verifyGenericWebhook({ authorization: `Bearer ${SECRET}` }, body, SECRET)).toMatchObject({ ok: false, error: { code: 'WEBHOOK_BAD_PAYLOAD' } });
    }
  });
});
