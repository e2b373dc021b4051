import { describe, expect, it } from '@jest/globals';
import { createHmac } from 'node:crypto';
import { SignJWT } from 'jose';
import { generateToken, publicKeyFromX } from './token.js';
import { ReplayCache, signAgentJwt, verifyAgentJwt, type AgentKey } from './jwt.js';

const AUD = 'gitops-server';
const agent = generateToken();
const other = generateToken();
const keys = new Map<string, AgentKey>([[agent.agentId, { publicKey: publicKeyFromX(agent.publicKeyX), revoked: false }]]);
const lookupKey = (kid: string): AgentKey | undefined => keys.get(kid);

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

async function codeOf(jwt: string, opts: { now?: number; cache?: ReplayCache; lookup?: (kid: string) => AgentKey | undefined } = {}): Promise<string> {
  try {
    await verifyAgentJwt(jwt, { audience: AUD, lookupKey: opts.lookup ?? lookupKey, replayCache: opts.cache ?? new ReplayCache(), now: opts.now });
    return 'ok';
  } catch (err) {
    expect((err as Error).message).not.toContain(jwt.split('.')[2] || '\u0000');
    return (err as { code: string }).code;
  }
}

describe('verifyAgentJwt', () => {
  it('accepts a fresh JWT signed by the agent token and names the agent', async () => {
    const jwt = await signAgentJwt(agent.token, { audience: AUD, ttlSeconds: 60 });
    const result = await verifyAgentJwt(jwt, { audience: AUD, lookupKey, replayCache: new ReplayCache() });
    expect(result.agentId).toBe(agent.agentId);
  });

  it('refuses alg none', async () => {
    const now = Math.floor(Date.now() / 1000);
    const jwt = `${b64({ alg: 'none', kid: agent.agentId })}.${b64({ aud: AUD, iat: now, exp: now + 60, jti: 'abcdefghij' })}.`;
    expect(await codeOf(jwt)).toBe('JWT_ALG_NOT_ALLOWED');
  });

  it('refuses HS256 signed with the public key as the HMAC secret', async () => {
    const now = Math.floor(Date.now() / 1000);
    const input = `${b64({ alg: 'HS256', typ: 'JWT', kid: agent.agentId })}.${b64({ aud: AUD, iat: now, exp: now + 60, jti: 'abcdefghij' })}`;
    for (const secret of [Buffer.from(agent.publicKeyX, 'base64url'), publicKeyFromX(agent.publicKeyX).export({ type: 'spki', format: 'pem' })]) {
      const sig = createHmac('sha256', secret).update(input).digest('base64url');
      expect(await codeOf(`${input}.${sig}`)).toBe('JWT_ALG_NOT_ALLOWED');
    }
  });

  it('refuses an expired JWT beyond the clock skew', async () => {
    const jwt = await signAgentJwt(agent.token, { audience: AUD, ttlSeconds: 60, now: Date.now() - 120_000 });
    expect(await codeOf(jwt)).toBe('JWT_EXPIRED');
  });

  it('tolerates 30 s of clock skew but not more', async () => {
    const slightlyAhead = await signAgentJwt(agent.token, { audience: AUD, now: Date.now() + 20_000 });
    expect(await codeOf(slightlyAhead)).toBe('ok');
    const future = await signAgentJwt(agent.token, { audience: AUD, now: Date.now() + 120_000 });
    expect(await codeOf(future)).toBe('JWT_NOT_YET_VALID');
  });

  it('refuses a JWT for another audience', async () => {
    const jwt = await signAgentJwt(agent.token, { audience: 'someone-else' });
    expect(await codeOf(jwt)).toBe('JWT_BAD_AUDIENCE');
  });

  it('refuses a replayed jti', async () => {
    const cache = new ReplayCache();
    const jwt = await signAgentJwt(agent.token, { audience: AUD });
    expect(await codeOf(jwt, { cache })).toBe('ok');
    expect(await codeOf(jwt, { cache })).toBe('JWT_REPLAYED');
  });

  it('refuses an unknown kid', async () => {
    const jwt = await signAgentJwt(other.token, { audience: AUD });
    expect(await codeOf(jwt)).toBe('JWT_UNKNOWN_AGENT');
  });

  it('refuses a revoked agent', async () => {
    const jwt = await signAgentJwt(agent.token, { audience: AUD });
    expect(await codeOf(jwt, { lookup: (kid) => ({ ...lookupKey(kid)!, revoked: true }) })).toBe('JWT_AGENT_REVOKED');
  });

  it('refuses a JWT signed by another key under this agent id', async () => {
    const jwt = await signAgentJwt({ ...other, agentId: agent.agentId }, { audience: AUD });
    expect(await codeOf(jwt)).toBe('JWT_BAD_SIGNATURE');
  });

  it('refuses a JWT whose lifetime exceeds five minutes', async () => {
    const now = Math.floor(Date.now() / 1000);
    const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'EdDSA', kid: agent.agentId }).setAudience(AUD).setIssuedAt(now).setExpirationTime(now + 3600).setJti('abcdefghijkl').sign(agent.privateKey);
    expect(await codeOf(jwt)).toBe('JWT_LIFETIME_TOO_LONG');
  });

  it.each(['', 'garbage', 'a.b.c', '....', 'x'.repeat(10_000), `${b64({ alg: 'EdDSA' })}.e30.`])('refuses garbage %#', async (jwt) => {
    expect(['JWT_MALFORMED', 'JWT_NO_KID']).toContain(await codeOf(jwt));
  });

  it('refuses to sign a JWT living longer than five minutes', async () => {
    await expect(signAgentJwt(agent.token, { audience: AUD, ttlSeconds: 301 })).rejects.toThrow(/300/);
  });
});

describe('ReplayCache', () => {
  it('forgets ids once their JWT has expired and stays within its bound', () => {
    const cache = new ReplayCache(2);
    expect(cache.remember('a', 1000, 0)).toBe(true);
    expect(cache.remember('b', 1000, 0)).toBe(true);
    expect(() => cache.remember('c', 1000, 0)).toThrow(/too many/);
    expect(cache.remember('c', 3000, 2000)).toBe(true);
    expect(cache.size).toBeLessThanOrEqual(2);
    expect(cache.remember('a', 5000, 2000)).toBe(true);
  });
});
