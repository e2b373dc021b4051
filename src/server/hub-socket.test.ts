// The hub over a real (plaintext) socket: rate limiting of failed upgrades and the version check.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { silentLogger } from '../common/logger.js';
import { signAgentJwt } from '../protocol/jwt.js';
import { CONNECT_PATH, CloseCode } from '../protocol/messages.js';
import { generateToken, publicKeyFromX } from '../protocol/token.js';
import { Hub } from './hub.js';
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
