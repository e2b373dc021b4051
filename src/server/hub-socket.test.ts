// The hub over a real (plaintext) socket: rate limiting of failed upgrades, the version check and
// backpressure on a slow session.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { silentLogger } from '../common/logger.js';
import { signAgentJwt } from '../protocol/jwt.js';
import { CONNECT_PATH, CloseCode, PROTOCOL_VERSION, encodeMessage } from '../protocol/messages.js';
import { generateToken, publicKeyFromX } from '../protocol/token.js';
import { Hub, type DesiredEntry } from './hub.js';
import { createServerMetrics } from './metrics.js';

const agent = generateToken();
let server: http.Server;
let hub: Hub;
let url: string;

beforeAll(async () => {
  hub = new Hub({
    registry: {
      lookupKey: (kid) => (kid === agent.agentId ? { publicKey: publicKeyFromX(agent.publicKeyX), revoked: false } : undefined),
      get: () => undefined, updateStatus: () => undefined, recordApplied: () => undefined, onChange: () => () => undefined,
    },
    provider: { configMessage: () => undefined, errorMessages: () => [], desired: async () => [] },
    audience: 'aud', logger: silentLogger(), metrics: createServerMetrics(), authFailureLimit: { max: 3, windowMs: 60_000 },
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
    ws.once('unexpected-response', (_q, res) => { res.resume(); resolve(res.statusCode ?? 0); });
    ws.once('error', reject);
  });
}

describe('Hub over a socket', () => {
  it('closes a hello with another protocol version with VERSION_MISMATCH', async () => {
    const ws = (await attempt(`Bearer ${await signAgentJwt(agent.token, { audience: 'aud' })}`)) as WebSocket;
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    ws.send(JSON.stringify({ type: 'hello', protocolVersion: 2, agentVersion: 'x', applied: {} }));
    expect(await closed).toMatchObject({ code: CloseCode.VERSION_MISMATCH, reason: expect.stringContaining('protocol 1') });
  });

  it('sends a slow session only the newest desired state of a project, not every commit it missed', async () => {
    const metrics = createServerMetrics();
    const slowHub = new Hub({
      registry: {
        lookupKey: (kid) => (kid === agent.agentId ? { publicKey: publicKeyFromX(agent.publicKeyX), revoked: false } : undefined),
        get: () => undefined, updateStatus: () => undefined, recordApplied: () => undefined, onChange: () => () => undefined,
      },
      provider: { configMessage: () => undefined, errorMessages: () => [], desired: async () => [] },
      audience: 'aud', logger: silentLogger(), metrics, maxBufferedBytes: 256 * 1024,
    });
    const srv = http.createServer();
    srv.on('upgrade', slowHub.handleUpgrade);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${(srv.address() as AddressInfo).port}${CONNECT_PATH}`, { headers: { authorization: `Bearer ${await signAgentJwt(agent.token, { audience: 'aud' })}` } });
      const received: Array<{ project: string; commit: string }> = [];
      ws.on('message', (data) => { const m = JSON.parse(data.toString()) as { project: string; commit: string }; received.push({ project: m.project, commit: m.commit }); });
      await new Promise((r) => ws.once('open', r));
      ws.send(JSON.stringify({ type: 'hello', protocolVersion: PROTOCOL_VERSION, agentVersion: 'x', applied: {} }));
      await new Promise((r) => setTimeout(r, 100));
      // The agent stops reading (busy, slow link): 12 commits of 4 MiB each arrive for project p, one for q.
      ws.pause();
      const big = 'x'.repeat(4 * 1024 * 1024);
      const entry = (project: string, i: number): DesiredEntry => {
        const commit = i.toString(16).padStart(40, '0');
        const message = { type: 'desired' as const, project, commit, digest: `d${i}`, config: { id: project, ref: {}, defaultNamespace: 'default', paths: [], reconcileTimeoutMs: 0, dryRunStrategy: 'none' as const, prune: true, pruneTimeoutMs: 0, prunePropagationPolicy: 'foreground' as const, inventoryPolicy: 'must_match' as const }, files: [{ path: 'a.yaml', content: big }] };
        return { project, commit, digest: message.digest, encoded: encodeMessage(message) };
      };
      for (let i = 1; i <= 12; i++) {
        slowHub.pushDesired(agent.agentId, entry('p', i));
        if (i === 6) slowHub.pushDesired(agent.agentId, entry('q', 100));
      }
      ws.resume();
      const last = (12).toString(16).padStart(40, '0');
      const deadline = Date.now() + 10_000;
      while (!received.some((m) => m.project === 'p' && m.commit === last) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
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

  it('refuses other paths with 404 and rate-limits an address after repeated failures', async () => {
    expect(await attempt(undefined, '/elsewhere')).toBe(404);
    expect(await attempt('Bearer garbage')).toBe(401);
    expect(await attempt('Bearer garbage')).toBe(401);
    expect(await attempt(undefined)).toBe(401);
    expect(await attempt('Bearer garbage')).toBe(429);
    // Even a good JWT waits out the window: the address is throttled, not the token.
    expect(await attempt(`Bearer ${await signAgentJwt(agent.token, { audience: 'aud' })}`)).toBe(429);
  });
});
