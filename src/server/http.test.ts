import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { silentLogger } from '../common/logger.js';
import { createHttpHandler } from './http.js';
import { createServerMetrics } from './metrics.js';
import type { AgentRecord, AgentStatus } from './registry.js';

const SECRET = 'webhook-secret-0123456789';
const ADMIN = 'admin-token-0123456789';
const refreshed: string[] = [];
const agent: AgentRecord = { id: 'a'.repeat(32), name: 'agent1', configProject: 'kubernetes-agent', publicKey: 'PUBLIC', createdAt: '2026-01-01T00:00:00Z' };
let server: http.Server;
let base: string;

beforeAll(async () => {
  server = http.createServer(createHttpHandler({
    registry: { all: () => [agent], status: (): AgentStatus => ({ connected: false, sessions: 0, applied: {} }) },
    metrics: createServerMetrics(), logger: silentLogger(), ready: () => true,
    refresh: async (p) => { refreshed.push(p); }, webhookSecret: SECRET, adminToken: ADMIN, isConnected: () => true,
  }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => { await new Promise((r) => server.close(r)); });

async function request(method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; body: string }> {
  const res = await fetch(base + path, { method, headers, body });
  return { status: res.status, body: await res.text() };
}

describe('HTTP routes', () => {
  it('answers health and readiness', async () => {
    expect((await request('GET', '/healthz')).status).toBe(200);
    expect((await request('GET', '/readyz')).status).toBe(200);
  });

  it('shows agent status only with the admin token, without public keys', async () => {
    expect((await request('GET', '/api/v1/agents')).status).toBe(401);
    expect((await request('GET', '/api/v1/agents', { authorization: 'Bearer wrong-token-0123456789' })).status).toBe(401);
    const ok = await request('GET', '/api/v1/agents', { authorization: `Bearer ${ADMIN}` });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ agents: [{ name: 'agent1', status: { connected: true } }] });
    expect(ok.body).not.toContain('PUBLIC');
  });

  it('refreshes the project named by a verified webhook and refuses bad signatures without detail', async () => {
    const body = JSON.stringify({ repository: { full_name: 'group/app' } });
    const sig = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
    expect((await request('POST', '/api/v1/webhooks/github', { 'x-hub-signature-256': sig, 'x-github-event': 'push' }, body)).status).toBe(202);
    const bad = await request('POST', '/api/v1/webhooks/github', { 'x-hub-signature-256': 'sha256=' + '0'.repeat(64) }, body);
    expect(bad.status).toBe(401);
    expect(bad.body).not.toContain(SECRET);
    expect((await request('POST', '/api/v1/webhooks/gitlab', { 'x-gitlab-token': 'nope' }, '{}')).status).toBe(401);
    expect((await request('POST', '/api/v1/webhooks/gitlab', { 'x-gitlab-token': SECRET, 'x-gitlab-event': 'Push Hook' }, JSON.stringify({ object_kind: 'push', project: { path_with_namespace: 'group/other' } }))).status).toBe(202);
    await new Promise((r) => setTimeout(r, 10));
    expect(refreshed).toEqual(['group/app', 'group/other']);
    expect((await request('GET', '/api/v1/webhooks/generic')).status).toBe(405);
  });

  it('refuses a webhook body over 5 MiB with 413 before verifying it', async () => {
    const res = await request('POST', '/api/v1/webhooks/generic', { authorization: `Bearer ${SECRET}` }, 'x'.repeat(5 * 1024 * 1024 + 1));
    expect(res.status).toBe(413);
  });

  it('exports Prometheus metrics including webhook results', async () => {
    const metrics = (await request('GET', '/metrics')).body;
    expect(metrics).toContain('gitops_server_webhooks_total{source="github",result="accepted"} 1');
    expect(metrics).toContain('gitops_server_webhooks_total{source="github",result="WEBHOOK_UNAUTHORIZED"} 1');
  });
});
