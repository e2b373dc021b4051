import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger, silentLogger, type Logger } from '../common/logger.js';
import { createHttpHandler, type HttpHandler, type HttpRoutesOptions } from './http.js';
import { parseTrustedProxies } from './client-address.js';
import { createServerMetrics } from './metrics.js';
import type { AgentRecord, AgentStatus } from './registry.js';

const SECRET = 'webhook-secret-0123456789';
const ADMIN = 'admin-token-0123456789';
const agent: AgentRecord = {
  id: 'a'.repeat(32),
  name: 'agent1',
  configProject: 'kubernetes-agent',
  publicKey: 'PUBLIC',
  createdAt: '2026-01-01T00:00:00Z',
};
const servers: http.Server[] = [];

interface TestServer {
  base: string;
  port: number;
  refreshed: string[];
  handler: HttpHandler;
}

/** The health the registry holds for agent1 (protocol 2): the status API shows it as it is. */
const health: AgentStatus['health'] = {
  'group/app': {
    commit: 'a'.repeat(40),
    digest: 'd',
    result: 'degraded',
    total: 2,
    counts: { current: 1, failed: 1 },
    notCurrent: 1,
    objects: [{ id: 'Deployment/default/web', state: 'failed', reason: 'CrashLoopBackOff', message: 'back-off' }],
    at: '2026-01-01T00:00:00.000Z',
  },
};

async function serve(extra: Partial<HttpRoutesOptions> = {}, logger: Logger = silentLogger()): Promise<TestServer> {
  const refreshed: string[] = [];
  const handler = createHttpHandler({
    registry: {
      all: () => [agent],
      status: (): AgentStatus => ({ connected: false, sessions: 0, applied: {}, health }),
    },
    metrics: createServerMetrics(),
    logger,
    ready: () => true,
    refresh: async (p) => {
      refreshed.push(p);
    },
    webhookSecret: SECRET,
    adminToken: ADMIN,
    isConnected: () => true,
    ...extra,
  });
  const server = http.createServer(handler);
  server.on('checkContinue', handler.checkContinue);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return { base: `http://127.0.0.1:${port}`, port, refreshed, handler };
}

afterAll(async () => {
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

async function request(
  s: TestServer,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(s.base + path, { method, headers, body });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

interface RawAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  sent: number;
  continued: boolean;
}

/**
 * Declares a `declared`-byte body but sends only `send` bytes (then waits): the server must answer
 * without the rest. `sent` is how much was written when the answer came.
 */
function partial(
  s: TestServer,
  path: string,
  headers: Record<string, string>,
  declared: number,
  send: number,
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let continued = false;
    const req = http.request({
      host: '127.0.0.1',
      port: s.port,
      method: 'POST',
      path,
      headers: { ...headers, 'content-length': String(declared) },
      agent: false,
    });
    req.on('information', (info) => {
      if (info.statusCode === 100) continued = true;
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, sent, continued });
      req.destroy();
    });
    req.on('error', reject);
    if (send > 0 && !/100-continue/.test(headers.expect ?? '')) {
      req.write(Buffer.alloc(send, 'x'));
      sent = send;
    } else req.flushHeaders();
  });
}

const githubSig = (body: string, secret = SECRET) =>
  `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

describe('HTTP routes (one listener for everything)', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await serve();
  });

  it('answers health and readiness', async () => {
    expect((await request(s, 'GET', '/healthz')).status).toBe(200);
    expect((await request(s, 'GET', '/readyz')).status).toBe(200);
  });

  it('shows agent status only with the admin token, without public keys', async () => {
    expect((await request(s, 'GET', '/api/v1/agents')).status).toBe(401);
    expect((await request(s, 'GET', '/api/v1/agents', { authorization: 'Bearer wrong-token-0123456789' })).status).toBe(
      401,
    );
    const ok = await request(s, 'GET', '/api/v1/agents', { authorization: `Bearer ${ADMIN}` });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({
      agents: [{ name: 'agent1', status: { connected: true, health: { 'group/app': { result: 'degraded' } } } }],
    });
    expect(ok.body).not.toContain('PUBLIC');
  });

  it('refreshes the project named by a verified webhook and refuses bad signatures without detail', async () => {
    const body = JSON.stringify({ repository: { full_name: 'group/app' } });
    expect(
      (
        await request(
          s,
          'POST',
          '/api/v1/webhooks/github',
          { 'x-hub-signature-256': githubSig(body), 'x-github-event': 'push' },
          body,
        )
      ).status,
    ).toBe(202);
    const bad = await request(
      s,
      'POST',
      '/api/v1/webhooks/github',
      { 'x-hub-signature-256': 'sha256=' + '0'.repeat(64) },
      body,
    );
    expect(bad.status).toBe(401);
    expect(bad.body).not.toContain(SECRET);
    expect(bad.headers.get('connection')).toBe('close');
    expect((await request(s, 'POST', '/api/v1/webhooks/gitlab', { 'x-gitlab-token': 'nope' }, '{}')).status).toBe(401);
    expect(
      (
        await request(
          s,
          'POST',
          '/api/v1/webhooks/gitlab',
          { 'x-gitlab-token': SECRET, 'x-gitlab-event': 'Push Hook' },
          JSON.stringify({ object_kind: 'push', project: { path_with_namespace: 'group/other' } }),
        )
      ).status,
    ).toBe(202);
    await new Promise((r) => setTimeout(r, 10));
    expect(s.refreshed).toEqual(['group/app', 'group/other']);
    expect((await request(s, 'GET', '/api/v1/webhooks/generic')).status).toBe(405);
  });

  it('answers a wrong GitLab token or bearer secret with 401 before reading the body', async () => {
    for (const [path, headers] of [
      ['/api/v1/webhooks/gitlab', { 'x-gitlab-token': 'wrong-token-0123456789' }],
      ['/api/v1/webhooks/generic', {}],
      ['/api/v1/webhooks/github', { 'x-hub-signature-256': 'sha256=short' }],
    ] as const) {
      const answer = await partial(s, path, headers, 4_900_000, 1024);
      expect(answer).toMatchObject({ status: 401, sent: 1024, headers: { connection: 'close' } });
    }
  });

  it('sends 100 Continue only to a request whose headers pass, so a refused one never sends its body', async () => {
    const refused = await partial(
      s,
      '/api/v1/webhooks/gitlab',
      { 'x-gitlab-token': 'wrong-token-0123456789', expect: '100-continue' },
      4_900_000,
      0,
    );
    expect(refused).toMatchObject({ status: 401, continued: false });
    const body = JSON.stringify({ project: 'group/continued' });
    const accepted = await new Promise<{ status: number; continued: boolean }>((resolve, reject) => {
      let continued = false;
      const req = http.request({
        host: '127.0.0.1',
        port: s.port,
        method: 'POST',
        path: '/api/v1/webhooks/generic',
        agent: false,
        headers: { authorization: `Bearer ${SECRET}`, expect: '100-continue', 'content-length': String(body.length) },
      });
      req.on('continue', () => {
        continued = true;
        req.end(body);
      });
      req.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, continued });
      });
      req.on('error', reject);
      req.flushHeaders();
    });
    expect(accepted).toEqual({ status: 202, continued: true });
  });

  it('refuses a webhook body over 5 MiB with 413, declared or streamed', async () => {
    expect(
      (await partial(s, '/api/v1/webhooks/generic', { authorization: `Bearer ${SECRET}` }, 5 * 1024 * 1024 + 1, 10))
        .status,
    ).toBe(413);
    const res = await new Promise<number>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port: s.port,
        method: 'POST',
        path: '/api/v1/webhooks/generic',
        agent: false,
        headers: { authorization: `Bearer ${SECRET}`, 'transfer-encoding': 'chunked' },
      });
      req.on('response', (r) => {
        r.resume();
        resolve(r.statusCode ?? 0);
        req.destroy();
      });
      req.on('error', reject);
      for (let i = 0; i < 6; i++) req.write(Buffer.alloc(1024 * 1024, 'x'));
    });
    expect(res).toBe(413);
  });

  it('exports Prometheus metrics including webhook results', async () => {
    const metrics = (await request(s, 'GET', '/metrics')).body;
    expect(metrics).toContain('gitops_server_webhooks_total{source="github",result="accepted"} 1');
    expect(metrics).toContain('gitops_server_webhooks_total{source="github",result="WEBHOOK_UNAUTHORIZED"} 2');
  });
});

describe('webhook limits', () => {
  it('reads at most maxBodies at once and answers the next with 503 and Retry-After', async () => {
    const s = await serve({ webhookLimits: { maxBodies: 1 } });
    const signature = { 'x-hub-signature-256': 'sha256=' + 'ab'.repeat(32) };
    const slow = http.request({
      host: '127.0.0.1',
      port: s.port,
      method: 'POST',
      path: '/api/v1/webhooks/github',
      agent: false,
      headers: { ...signature, 'content-length': '1000' },
    });
    slow.on('error', () => undefined);
    slow.write('x'.repeat(10));
    await new Promise((r) => setTimeout(r, 100));
    const busy = await partial(s, '/api/v1/webhooks/github', signature, 1000, 10);
    expect(busy).toMatchObject({ status: 503, headers: { 'retry-after': '1', connection: 'close' } });
    // A sender proven by its header secret has slots of its own.
    expect(
      (
        await request(
          s,
          'POST',
          '/api/v1/webhooks/generic',
          { authorization: `Bearer ${SECRET}` },
          '{"project":"group/app"}',
        )
      ).status,
    ).toBe(202);
    slow.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect((await partial(s, '/api/v1/webhooks/github', signature, 10, 10)).status).toBe(401);
  });

  it('answers a body that does not arrive in time with 408', async () => {
    const s = await serve({ webhookLimits: { bodyTimeoutMs: 200 } });
    const started = Date.now();
    expect((await partial(s, '/api/v1/webhooks/generic', { authorization: `Bearer ${SECRET}` }, 100, 10)).status).toBe(
      408,
    );
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('answers 429 after N failures from an address in a minute, still lets a valid header secret through, and logs one line per interval', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(c: Buffer, _e, done) {
        for (const l of c.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    let now = 1_000_000;
    const s = await serve({ webhookLimits: { failuresPerMinute: 3 }, now: () => now }, createLogger({ destination }));
    const wrong = { 'x-gitlab-token': 'wrong-token-0123456789' };
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++)
      statuses.push((await request(s, 'POST', '/api/v1/webhooks/gitlab', wrong, '{}')).status);
    expect(statuses).toEqual([401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
    const limited = await request(
      s,
      'POST',
      '/api/v1/webhooks/github',
      { 'x-hub-signature-256': 'sha256=' + '0'.repeat(64) },
      '{}',
    );
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBe(60);
    const push = JSON.stringify({ object_kind: 'push', project: { path_with_namespace: 'group/app' } });
    expect((await request(s, 'POST', '/api/v1/webhooks/gitlab', { 'x-gitlab-token': SECRET }, push)).status).toBe(202);
    const refusedLines = () => lines.filter((l) => l.msg === 'webhooks refused');
    expect(refusedLines()).toEqual([
      expect.objectContaining({ count: 1, reasons: { 'gitlab:WEBHOOK_UNAUTHORIZED': 1 } }),
    ]);
    now += 61_000;
    expect((await request(s, 'POST', '/api/v1/webhooks/gitlab', wrong, '{}')).status).toBe(401);
    expect(refusedLines()).toHaveLength(2);
    expect(refusedLines()[1]).toMatchObject({
      count: 11,
      reasons: { 'gitlab:WEBHOOK_UNAUTHORIZED': 3, 'gitlab:rate-limited': 7, 'github:rate-limited': 1 },
      remotes: { '127.0.0.1': 11 },
    });
    expect((await request(s, 'POST', '/api/v1/webhooks/gitlab', wrong, '{}')).status).toBe(401);
    s.handler.close();
    expect(refusedLines()).toHaveLength(3);
    expect(refusedLines()[2]).toMatchObject({ count: 1 });
    expect(JSON.stringify(lines)).not.toContain(SECRET);
  });

  it('behind a --trusted-proxy, limits the X-Forwarded-For client, not the proxy every sender shares', async () => {
    const s = await serve({
      webhookLimits: { failuresPerMinute: 2 },
      trustedProxies: parseTrustedProxies(['127.0.0.1']).proxies,
    });
    const from = (client: string) => ({ 'x-forwarded-for': client, 'x-hub-signature-256': 'sha256=bad' });
    const attacker = [];
    for (let i = 0; i < 3; i++)
      attacker.push((await request(s, 'POST', '/api/v1/webhooks/github', from('203.0.113.9'), '{}')).status);
    expect(attacker).toEqual([401, 401, 429]);
    const body = JSON.stringify({ repository: { full_name: 'group/app' } });
    expect(
      (
        await request(
          s,
          'POST',
          '/api/v1/webhooks/github',
          { 'x-forwarded-for': '198.51.100.7', 'x-hub-signature-256': githubSig(body) },
          body,
        )
      ).status,
    ).toBe(202);
  });
});

describe('route sets', () => {
  it("with --metrics-listen, the agents' port serves no /metrics and no status API, the metrics port no webhooks", async () => {
    const agents = await serve({ routes: 'agents' });
    const ops = await serve({ routes: 'ops' });
    expect((await request(agents, 'GET', '/metrics')).status).toBe(404);
    expect((await request(agents, 'GET', '/api/v1/agents', { authorization: `Bearer ${ADMIN}` })).status).toBe(404);
    expect((await request(agents, 'GET', '/healthz')).status).toBe(200);
    expect(
      (
        await request(
          agents,
          'POST',
          '/api/v1/webhooks/generic',
          { authorization: `Bearer ${SECRET}` },
          '{"project":"a/b"}',
        )
      ).status,
    ).toBe(202);
    expect((await request(ops, 'GET', '/metrics')).body).toContain('gitops_server_webhooks_total');
    expect((await request(ops, 'GET', '/api/v1/agents', { authorization: `Bearer ${ADMIN}` })).status).toBe(200);
    expect((await request(ops, 'GET', '/readyz')).status).toBe(200);
    expect(
      (
        await request(
          ops,
          'POST',
          '/api/v1/webhooks/generic',
          { authorization: `Bearer ${SECRET}` },
          '{"project":"a/b"}',
        )
      ).status,
    ).toBe(404);
  });
});
