import { describe, expect, it } from '@jest/globals';
import { createHmac } from 'node:crypto';
import { SignJWT } from 'jose';
import { generateToken, parseToken, publicKeyFromX } from './token.js';
import { JwtRateLimitedError, ReplayCache, claimedKid, signAgentJwt, verifyAgentJwt, type AgentKey } from './jwt.js';

const AUD = 'gitops-server';
const agent = generateToken();
const other = generateToken();
const keys = new Map<string, AgentKey>([
  [agent.agentId, { publicKey: publicKeyFromX(agent.publicKeyX), revoked: false }],
]);
const lookupKey = (kid: string): AgentKey | undefined => keys.get(kid);

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

async function codeOf(
  jwt: string,
  opts: { now?: number; cache?: ReplayCache; lookup?: (kid: string) => AgentKey | undefined } = {},
): Promise<string> {
  try {
    await verifyAgentJwt(jwt, {
      audience: AUD,
      lookupKey: opts.lookup ?? lookupKey,
      replayCache: opts.cache ?? new ReplayCache(),
      now: opts.now,
    });
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
    for (const secret of [
      Buffer.from(agent.publicKeyX, 'base64url'),
      publicKeyFromX(agent.publicKeyX).export({ type: 'spki', format: 'pem' }),
    ]) {
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
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: 'EdDSA', kid: agent.agentId })
      .setAudience(AUD)
      .setIssuedAt(now)
      .setExpirationTime(now + 3600)
      .setJti('abcdefghijkl')
      .sign(agent.privateKey);
    expect(await codeOf(jwt)).toBe('JWT_LIFETIME_TOO_LONG');
  });

  it.each(['', 'garbage', 'a.b.c', '....', 'x'.repeat(10_000), `${b64({ alg: 'EdDSA' })}.e30.`])(
    'refuses garbage %#',
    async (jwt) => {
      expect(['JWT_MALFORMED', 'JWT_NO_KID']).toContain(await codeOf(jwt));
    },
  );

  it('refuses to sign a JWT living longer than five minutes', async () => {
    await expect(signAgentJwt(agent.token, { audience: AUD, ttlSeconds: 301 })).rejects.toThrow(/300/);
  });
});

describe('ReplayCache', () => {
  it('forgets ids once their JWT has expired and stays within its bound', () => {
    const cache = new ReplayCache(2);
    expect(cache.remember('x', 'a', 1000, 0)).toBe(true);
    expect(cache.remember('y', 'b', 1000, 0)).toBe(true);
    expect(() => cache.remember('z', 'c', 1000, 0)).toThrow(/too many/);
    expect(cache.remember('z', 'c', 3000, 2000)).toBe(true);
    expect(cache.size).toBeLessThanOrEqual(2);
    expect(cache.remember('x', 'a', 5000, 2000)).toBe(true);
  });

  it('refuses a replayed id of the same agent but not the same id of another agent', () => {
    const cache = new ReplayCache();
    expect(cache.remember('x', 'jti-1', 1000, 0)).toBe(true);
    expect(cache.remember('x', 'jti-1', 1000, 10)).toBe(false);
    expect(cache.remember('y', 'jti-1', 1000, 10)).toBe(true);
  });

  it("keeps one agent within its quota of live ids, so another agent's JWTs still fit", () => {
    const cache = new ReplayCache(10, 3);
    for (let i = 0; i < 3; i++) expect(cache.remember('noisy', `n${i}`, 60_000, 0)).toBe(true);
    let quota = '';
    for (let i = 3; i < 2000; i++) {
      try {
        cache.remember('noisy', `n${i}`, 60_000, 0);
      } catch (err) {
        quota = (err as { code: string }).code;
      }
    }
    expect(quota).toBe('JWT_REPLAY_QUOTA');
    expect(cache.sizeOf('noisy')).toBe(3);
    for (let i = 0; i < 3; i++) expect(cache.remember('quiet', `q${i}`, 60_000, 0)).toBe(true);
    // Once the noisy agent's JWTs expire, it gets its quota back.
    expect(cache.remember('noisy', 'later', 120_000, 60_000)).toBe(true);
    expect(cache.sizeOf('noisy')).toBe(1);
  });
});

describe('verifyAgentJwt admit hook', () => {
  it('refuses a verified agent before recording its jti, so the same JWT can be used once admitted', async () => {
    const jwt = await signAgentJwt(agent.token, { audience: AUD });
    const cache = new ReplayCache();
    let open = false;
    const admit = (agentId: string): void => {
      if (!open) throw new JwtRateLimitedError(agentId, 'too many connections');
    };
    await expect(verifyAgentJwt(jwt, { audience: AUD, lookupKey, replayCache: cache, admit })).rejects.toMatchObject({
      code: 'JWT_RATE_LIMITED',
    });
    expect(cache.size).toBe(0);
    open = true;
    await expect(verifyAgentJwt(jwt, { audience: AUD, lookupKey, replayCache: cache, admit })).resolves.toMatchObject({
      agentId: agent.agentId,
    });
    await expect(verifyAgentJwt(jwt, { audience: AUD, lookupKey, replayCache: cache, admit })).rejects.toMatchObject({
      code: 'JWT_REPLAYED',
    });
  });

  it('is not called for a JWT that does not verify', async () => {
    const jwt = await signAgentJwt({ ...parseToken(other.token), agentId: agent.agentId }, { audience: AUD });
    let called = 0;
    await expect(
      verifyAgentJwt(jwt, {
        audience: AUD,
        lookupKey,
        replayCache: new ReplayCache(),
        admit: () => {
          called++;
        },
      }),
    ).rejects.toMatchObject({ code: 'JWT_BAD_SIGNATURE' });
    expect(called).toBe(0);
  });
});

describe('claimedKid', () => {
  it('reads the kid without verifying, bounded, and nothing from garbage', async () => {
    expect(claimedKid(await signAgentJwt(agent.token, { audience: AUD }))).toBe(agent.agentId);
    expect(claimedKid('garbage')).toBeUndefined();
    const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: 'k'.repeat(500) })).toString('base64url');
    expect(claimedKid(`${header}.e30.sig`)).toHaveLength(64);
  });
});
