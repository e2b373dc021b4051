// The hub over a real (plaintext) socket: lockout of failed upgrades, per-agent limits (connection
// rate, replay quota, sessions, reports for foreign projects, frame size), the version check and
// backpressure on a slow session.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { silentLogger } from '../common/logger.js';
import { signAgentJwt } from '../protocol/jwt.js';
import {
  CONNECT_PATH,
  CloseCode,
  MAX_AGENT_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  encodeMessage,
  type ConfigMessage,
} from '../protocol/messages.js';
import { generateToken, parseToken, publicKeyFromX } from '../protocol/token.js';
import { parseTrustedProxies } from './client-address.js';
import { Hub, type HubOptions } from './hub.js';
import type { DesiredEntry } from './ports.js';
import { createServerMetrics } from './metrics.js';

/** The registry's status writes, ignored: these tests look at sockets, not at the status. */
const noStatusWrites = {
  recordSessions: () => undefined,
  recordHello: () => undefined,
  recordApplied: () => undefined,
  recordProjectProblems: () => undefined,
  recordDrift: () => undefined,
  recordHealth: () => ({ kind: 'dropped' as const }),
};
const agent = generateToken();
const agent2 = generateToken();
let server: http.Server;
let hub: Hub;
let url: string;

beforeAll(async () => {
  hub = new Hub({
    registry: {
      lookupKey: (kid) =>
        kid === agent.agentId ? { publicKey: publicKeyFromX(agent.publicKeyX), revoked: false } : undefined,
      get: () => undefined,
      ...noStatusWrites,
      onChange: () => () => undefined,
    },
    provider: {
      configMessage: () => undefined,
      errorMessages: () => [],
      desired: async () => [],
      projectsOf: () => ['p'],
    },
    audience: 'aud',
    logger: silentLogger(),
    metrics: createServerMetrics(),
    authFailureLimit: { max: 3, windowMs: 60_000 },
  });
  server = http.createServer();
  server.on('upgrade', hub.handleUpgrade);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}${CONNECT_PATH}`;
});
afterAll(async () => {
  await hub.close();
  await new Promise((r) => server.close(r));
});

function attempt(authorization?: string, path = CONNECT_PATH): Promise<number | WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(CONNECT_PATH, path), { headers: authorization ? { authorization } : {} });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_q, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    ws.once('error', reject);
  });
}

describe('Hub over a socket', () => {
  it('closes a hello with another protocol version with VERSION_MISMATCH', async () => {
    const ws = (await attempt(`Bearer ${await signAgentJwt(agent.token, { audience: 'aud' })}`)) as WebSocket;
    const closed = new Promise<{ code: number; reason: string }>((r) =>
      ws.on('close', (code, reason) => r({ code, reason: reason.toString() })),
    );
    ws.send(JSON.stringify({ type: 'hello', protocolVersion: 3, agentVersion: 'x', applied: {} }));
    expect(await closed).toMatchObject({
      code: CloseCode.VERSION_MISMATCH,
      reason: 'server speaks protocol 1 or 2, agent sent 3',
    });
  });

  it('sends a slow session only the newest desired state of a project, not every commit it missed', async () => {
    const metrics = createServerMetrics();
    const slowHub = new Hub({
      registry: {
        lookupKey: (kid) =>
          kid === agent.agentId ? { publicKey: publicKeyFromX(agent.publicKeyX), revoked: false } : undefined,
        get: () => undefined,
        ...noStatusWrites,
        onChange: () => () => undefined,
      },
      provider: {
        configMessage: () => undefined,
        errorMessages: () => [],
        desired: async () => [],
        projectsOf: () => ['p'],
      },
      audience: 'aud',
      logger: silentLogger(),
      metrics,
      maxBufferedBytes: 256 * 1024,
    });
    const srv = http.createServer();
    srv.on('upgrade', slowHub.handleUpgrade);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${(srv.address() as AddressInfo).port}${CONNECT_PATH}`, {
        headers: { authorization: `Bearer ${await signAgentJwt(agent.token, { audience: 'aud' })}` },
      });
      const received: Array<{ project: string; commit: string }> = [];
      ws.on('message', (data) => {
        const m = JSON.parse(data.toString()) as { project: string; commit: string };
        received.push({ project: m.project, commit: m.commit });
      });
      await new Promise((r) => ws.once('open', r));
      ws.send(JSON.stringify({ type: 'hello', protocolVersion: PROTOCOL_VERSION, agentVersion: 'x', applied: {} }));
      await new Promise((r) => setTimeout(r, 100));
      // The agent stops reading (busy, slow link): 12 commits of 4 MiB each arrive for project p, one for q.
      ws.pause();
      const big = 'x'.repeat(4 * 1024 * 1024);
      const entry = (project: string, i: number): DesiredEntry => {
        const commit = i.toString(16).padStart(40, '0');
        const message = {
          type: 'desired' as const,
          project,
          commit,
          digest: `d${i}`,
          config: {
            id: project,
            ref: {},
            defaultNamespace: 'default',
            paths: [],
            reconcileTimeoutMs: 0,
            dryRunStrategy: 'none' as const,
            prune: true,
            pruneTimeoutMs: 0,
            prunePropagationPolicy: 'foreground' as const,
            inventoryPolicy: 'must_match' as const,
          },
          files: [{ path: 'a.yaml', content: big }],
        };
        return { project, commit, digest: message.digest, encoded: encodeMessage(message) };
      };
      for (let i = 1; i <= 12; i++) {
        slowHub.pushDesired(agent.agentId, entry('p', i));
        if (i === 6) slowHub.pushDesired(agent.agentId, entry('q', 100));
      }
      ws.resume();
      const last = (12).toString(16).padStart(40, '0');
      const deadline = Date.now() + 10_000;
      while (!received.some((m) => m.project === 'p' && m.commit === last) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 100));
      const p = received.filter((m) => m.project === 'p').map((m) => parseInt(m.commit, 16));
      process.stderr.write(`slow session: sent commits ${p.join(',')} of 1..12\n`);
      expect(p.at(-1)).toBe(12);
      expect(p.length).toBeLessThan(6);
      expect([...p].sort((a, b) => a - b)).toEqual(p);
      expect(received.filter((m) => m.project === 'q')).toHaveLength(1);
      expect((await metrics.desiredCoalesced.get()).values[0].value).toBe(12 - p.length);
      ws.terminate();
    } finally {
      await slowHub.close();
      await new Promise((r) => srv.close(r));
    }
  });

  it('refuses other paths with 404 and locks out failures of an address, but never a JWT that verifies', async () => {
    expect(await attempt(undefined, '/elsewhere')).toBe(404);
    expect(await attempt('Bearer garbage')).toBe(401);
    expect(await attempt('Bearer garbage')).toBe(401);
    expect(await attempt(undefined)).toBe(401);
    expect(await attempt('Bearer garbage')).toBe(429);
    // The lockout is for failures: a good JWT from the same address passes.
    const ok = await attempt(`Bearer ${await signAgentJwt(agent.token, { audience: 'aud' })}`);
    expect(ok).toBeInstanceOf(WebSocket);
    (ok as WebSocket).terminate();
  });

  it("keys failures by address and claimed agent: bad signatures for one agent lock only that agent's failures", async () => {
    const forged = (): Promise<string> =>
      signAgentJwt({ ...parseToken(generateToken().token), agentId: agent.agentId }, { audience: 'aud' });
    for (let i = 0; i < 3; i++) expect(await attempt(`Bearer ${await forged()}`)).toBe(401);
    expect(await attempt(`Bearer ${await forged()}`)).toBe(429);
    const ok = await attempt(`Bearer ${await signAgentJwt(agent.token, { audience: 'aud' })}`);
    expect(ok).toBeInstanceOf(WebSocket);
    (ok as WebSocket).terminate();
  });
});

/** A hub on its own plaintext server, for one test. */
async function withHub(
  options: Partial<HubOptions>,
  body: (h: { hub: Hub; url: string; metrics: ReturnType<typeof createServerMetrics> }) => Promise<void>,
): Promise<void> {
  const metrics = createServerMetrics();
  const h = new Hub({
    registry: {
      lookupKey: (kid) =>
        [agent, agent2].find((a) => a.agentId === kid) && {
          publicKey: publicKeyFromX([agent, agent2].find((a) => a.agentId === kid)!.publicKeyX),
          revoked: false,
        },
      get: () => undefined,
      ...noStatusWrites,
      onChange: () => () => undefined,
    },
    provider: {
      configMessage: () => undefined,
      errorMessages: () => [],
      desired: async () => [],
      projectsOf: () => ['group/app'],
    },
    audience: 'aud',
    logger: silentLogger(),
    metrics,
    ...options,
  });
  const srv = http.createServer();
  srv.on('upgrade', h.handleUpgrade);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  try {
    await body({ hub: h, url: `ws://127.0.0.1:${(srv.address() as AddressInfo).port}${CONNECT_PATH}`, metrics });
  } finally {
    await h.close();
    await new Promise((r) => srv.close(r));
  }
}

function open(target: string, headers: Record<string, string>): Promise<number | WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_q, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    ws.once('error', reject);
  });
}
const bearer = async (token: string): Promise<Record<string, string>> => ({
  authorization: `Bearer ${await signAgentJwt(token, { audience: 'aud' })}`,
});
const helloText = JSON.stringify({ type: 'hello', protocolVersion: PROTOCOL_VERSION, agentVersion: 'x', applied: {} });
const closeOf = (ws: WebSocket): Promise<number> => new Promise((r) => ws.once('close', (code) => r(code)));

describe('Hub per-agent limits', () => {
  it("refuses an agent's connections over its rate with 429, counted, while another agent connects", async () => {
    await withHub({ connectRate: { burst: 3, perMinute: 1 } }, async ({ url: u, metrics }) => {
      const results = [];
      for (let i = 0; i < 6; i++) results.push(await open(u, await bearer(agent.token)));
      expect(results.map((r) => (typeof r === 'number' ? r : 101))).toEqual([101, 101, 101, 429, 429, 429]);
      const other = await open(u, await bearer(agent2.token));
      expect(other).toBeInstanceOf(WebSocket);
      expect((await metrics.agentLimited.get()).values.find((v) => v.labels.reason === 'JWT_RATE_LIMITED')?.value).toBe(
        3,
      );
      for (const r of [...results, other]) if (typeof r !== 'number') r.terminate();
    });
  });

  it('refuses JWTs over the per-agent replay quota, not those of other agents', async () => {
    await withHub({ replayQuotaPerAgent: 2 }, async ({ url: u }) => {
      const a = [
        await open(u, await bearer(agent.token)),
        await open(u, await bearer(agent.token)),
        await open(u, await bearer(agent.token)),
      ];
      expect(a.map((r) => (typeof r === 'number' ? r : 101))).toEqual([101, 101, 429]);
      const b = await open(u, await bearer(agent2.token));
      expect(b).toBeInstanceOf(WebSocket);
      for (const r of [...a, b]) if (typeof r !== 'number') r.terminate();
    });
  });

  it('keeps at most maxSessionsPerAgent sessions: a newer one closes the oldest with SESSION_REPLACED', async () => {
    await withHub({ maxSessionsPerAgent: 2 }, async ({ hub: h, url: u }) => {
      const first = (await open(u, await bearer(agent.token))) as WebSocket;
      const replaced = closeOf(first);
      const second = (await open(u, await bearer(agent.token))) as WebSocket;
      const third = (await open(u, await bearer(agent.token))) as WebSocket;
      expect(await replaced).toBe(CloseCode.SESSION_REPLACED);
      await new Promise((r) => setTimeout(r, 50));
      expect(h.sessionCount).toBe(2);
      second.terminate();
      third.terminate();
    });
  });

  it('closes a frame over 1 MiB with MESSAGE_TOO_BIG', async () => {
    await withHub({}, async ({ url: u }) => {
      const ws = (await open(u, await bearer(agent.token))) as WebSocket;
      const closed = closeOf(ws);
      ws.send(helloText);
      ws.send(JSON.stringify({ type: 'status', project: 'p'.repeat(MAX_AGENT_MESSAGE_BYTES + 10) }));
      expect(await closed).toBe(CloseCode.MESSAGE_TOO_BIG);
    });
  });

  it("stores reports only for the agent's own projects and tells the agent once", async () => {
    const stored: string[] = [];
    await withHub(
      {
        registry: {
          lookupKey: (kid) =>
            kid === agent.agentId ? { publicKey: publicKeyFromX(agent.publicKeyX), revoked: false } : undefined,
          get: () => undefined,
          ...noStatusWrites,
          onChange: () => () => undefined,
          recordApplied: (_id, project) => {
            stored.push(project);
          },
        },
      },
      async ({ url: u, metrics }) => {
        const ws = (await open(u, await bearer(agent.token))) as WebSocket;
        const received: string[] = [];
        ws.on('message', (d) => received.push(d.toString()));
        ws.send(helloText);
        const report = (project: string): string =>
          JSON.stringify({
            type: 'status',
            project,
            commit: 'a'.repeat(40),
            digest: 'd',
            result: 'applied',
            changes: [],
            errors: [],
            durationMs: 1,
          });
        for (const project of ['__proto__', 'constructor', 'other/project', 'group/app']) ws.send(report(project));
        await new Promise((r) => setTimeout(r, 200));
        expect(stored).toEqual(['group/app']);
        const errors = received
          .map((t) => JSON.parse(t) as { type: string; problems?: Array<{ code: string }> })
          .filter((m) => m.type === 'error');
        expect(errors).toHaveLength(1);
        expect(errors[0].problems?.[0].code).toBe('REPORT_REFUSED');
        expect(
          (await metrics.agentLimited.get()).values.find((v) => v.labels.reason === 'unknown-project')?.value,
        ).toBe(3);
        ws.terminate();
      },
    );
  });

  it('with a trusted proxy, locks out the forwarded address that fails, not another one behind the same proxy', async () => {
    await withHub(
      { trustedProxies: parseTrustedProxies(['127.0.0.1']).proxies, authFailureLimit: { max: 2, windowMs: 60_000 } },
      async ({ url: u }) => {
        const from = (xff: string, auth = 'Bearer garbage'): Promise<number | WebSocket> =>
          open(u, { authorization: auth, 'x-forwarded-for': xff });
        expect([await from('198.51.100.1'), await from('198.51.100.1'), await from('198.51.100.1')]).toEqual([
          401, 401, 429,
        ]);
        expect(await from('198.51.100.2')).toBe(401);
        // A client cannot escape its lockout by prepending addresses: the right-most untrusted hop counts.
        expect(await from('203.0.113.7, 198.51.100.1')).toBe(429);
      },
    );
  });
});

describe('Hub protocol versions', () => {
  it('sends config to a v1 and a v2 session of one agent each in its own version, at hello and on a change', async () => {
    const config: ConfigMessage = {
      type: 'config',
      settings: { drift: { mode: 'correct', ignore: [] } },
      projects: ['group/app'],
      errors: [],
    };
    const provider = {
      configMessage: () => config,
      errorMessages: () => [],
      desired: async () => [],
      projectsOf: () => ['group/app'],
    };
    await withHub({ provider }, async ({ hub: h, url: u }) => {
      const sessions: Array<{ ws: WebSocket; frames: Array<Record<string, unknown>> }> = [];
      for (const version of [1, 2]) {
        const ws = (await open(u, await bearer(agent.token))) as WebSocket;
        const frames: Array<Record<string, unknown>> = [];
        ws.on('message', (d) => frames.push(JSON.parse(d.toString()) as Record<string, unknown>));
        ws.send(JSON.stringify({ type: 'hello', protocolVersion: version, agentVersion: 'x', applied: {} }));
        sessions.push({ ws, frames });
      }
      // The config after hello says each session's hello was handled.
      await waitUntil(() => sessions.every((s) => s.frames.length === 1));
      h.pushConfig(agent.agentId, { ...config, projects: ['group/app', 'group/other'] });
      await waitUntil(() => sessions.every((s) => s.frames.length === 2));
      const [v1, v2] = sessions.map((s) => s.frames);
      for (const frame of v1) expect(frame).not.toHaveProperty('protocolVersion');
      for (const frame of v2) expect(frame).toMatchObject({ type: 'config', protocolVersion: 2 });
      expect(v1[1]).toEqual({ ...config, projects: ['group/app', 'group/other'] });
      for (const s of sessions) s.ws.terminate();
    });
  });
});

async function waitUntil(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
