/**
 * The short-lived JWT an agent sends instead of its token (`Authorization: Bearer <jwt>` on the
 * WebSocket upgrade), and the server's verification of it.
 *
 * Agent side: `signAgentJwt` signs with the token's Ed25519 key (EdDSA, `kid` = agent id, `aud`,
 * `iat`/`exp` at most 5 minutes apart, a random `jti`).
 *
 * Server side: `verifyAgentJwt` allow-lists exactly `EdDSA`, requires `typ` JWT (when present) and a
 * `kid`, looks the key up (unknown and revoked agents fail here), verifies the signature, then the
 * claims (audience, expiry and issue time with a small skew, maximum lifetime), and finally records
 * the `jti` in a replay cache (per agent at most a quota of live ids, so one agent's flood of JWTs
 * cannot fill it for others). Before the `jti` is recorded an optional `admit` hook may refuse a
 * verified agent (the hub's per-agent connection rate). Each failure is its own error class with a stable `code`;
 * none of them carries the JWT. At the HTTP edge every failure becomes a bare 401 and the code goes to the log.
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { SignJWT, compactVerify, decodeProtectedHeader, errors as joseErrors } from 'jose';
import { GitopsError } from '../common/errors.js';
import { parseToken, type ParsedToken } from './token.js';

/** Audience both sides use unless configured otherwise (`--audience` on each). */
export const DEFAULT_AUDIENCE = 'gitops-server';
/** The one algorithm accepted. */
export const JWT_ALGORITHM = 'EdDSA';
/** Longest lifetime (`exp - iat`) a JWT may claim, in seconds. */
export const MAX_JWT_LIFETIME_SECONDS = 300;
/** Largest clock skew tolerated between agent and server, in seconds. */
export const MAX_CLOCK_SKEW_SECONDS = 30;
/** Bound on a JWT's length before any parsing (a real one is about 400 bytes). */
const MAX_JWT_LENGTH = 4096;

export interface SignOptions {
  audience: string;
  /** Lifetime in seconds, 1..300 (default 60). */
  ttlSeconds?: number;
  /** Clock for tests, in ms since the epoch. */
  now?: number;
}

/** Signs a fresh JWT for one connection attempt. `token` is the agent token or its parsed form. */
export async function signAgentJwt(token: string | ParsedToken, options: SignOptions): Promise<string> {
  const parsed = typeof token === 'string' ? parseToken(token) : token;
  const ttl = options.ttlSeconds ?? 60;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_JWT_LIFETIME_SECONDS) {
    throw new RangeError(`ttlSeconds must be an integer from 1 to ${MAX_JWT_LIFETIME_SECONDS}, got ${ttl}`);
  }
  const iat = Math.floor((options.now ?? Date.now()) / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: JWT_ALGORITHM, typ: 'JWT', kid: parsed.agentId })
    .setAudience(options.audience)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ttl)
    .setJti(randomBytes(16).toString('base64url'))
    .sign(parsed.privateKey);
}

// ---- errors: one class per reason, each with a stable code ----

export abstract class JwtError extends GitopsError {
  constructor(code: string, message: string, options: { cause?: unknown } = {}) {
    super('user', code, message, options);
  }
}
export class JwtMalformedError extends JwtError {
  constructor(detail: string, cause?: unknown) {
    super('JWT_MALFORMED', `JWT is malformed: ${detail}`, { cause });
  }
}
export class JwtAlgorithmError extends JwtError {
  constructor(alg: unknown) {
    super(
      'JWT_ALG_NOT_ALLOWED',
      `JWT algorithm ${JSON.stringify(String(alg)).slice(0, 40)} is not allowed (only ${JWT_ALGORITHM})`,
    );
  }
}
export class JwtTypeError extends JwtError {
  constructor() {
    super('JWT_BAD_TYP', 'JWT typ header must be "JWT"');
  }
}
export class JwtMissingKidError extends JwtError {
  constructor() {
    super('JWT_NO_KID', 'JWT has no kid (agent id) header');
  }
}
export class JwtUnknownAgentError extends JwtError {
  constructor(kid: string) {
    super('JWT_UNKNOWN_AGENT', `agent ${kid}: no such agent`);
  }
}
export class JwtRevokedAgentError extends JwtError {
  constructor(kid: string) {
    super('JWT_AGENT_REVOKED', `agent ${kid}: revoked`);
  }
}
export class JwtSignatureError extends JwtError {
  constructor(kid: string, cause?: unknown) {
    super('JWT_BAD_SIGNATURE', `agent ${kid}: signature does not verify`, { cause });
  }
}
export class JwtClaimsError extends JwtError {
  constructor(kid: string, detail: string) {
    super('JWT_BAD_CLAIMS', `agent ${kid}: ${detail}`);
  }
}
export class JwtAudienceError extends JwtError {
  constructor(kid: string) {
    super('JWT_BAD_AUDIENCE', `agent ${kid}: audience does not match this server`);
  }
}
export class JwtExpiredError extends JwtError {
  constructor(kid: string) {
    super('JWT_EXPIRED', `agent ${kid}: JWT expired`);
  }
}
export class JwtNotYetValidError extends JwtError {
  constructor(kid: string) {
    super('JWT_NOT_YET_VALID', `agent ${kid}: JWT issued in the future or not yet valid (check the clock)`);
  }
}
export class JwtLifetimeError extends JwtError {
  constructor(kid: string) {
    super('JWT_LIFETIME_TOO_LONG', `agent ${kid}: JWT lifetime exceeds ${MAX_JWT_LIFETIME_SECONDS}s`);
  }
}
export class JwtReplayedError extends JwtError {
  constructor(kid: string) {
    super('JWT_REPLAYED', `agent ${kid}: JWT id was already used`);
  }
}
export class JwtReplayCacheFullError extends JwtError {
  constructor() {
    super('JWT_REPLAY_CACHE_FULL', 'too many live JWTs; try again shortly');
  }
}
export class JwtReplayQuotaError extends JwtError {
  constructor(kid: string, quota: number) {
    super(
      'JWT_REPLAY_QUOTA',
      `agent ${kid}: more than ${quota} live JWTs for this agent (one per connection); try again shortly`,
    );
  }
}
export class JwtRateLimitedError extends JwtError {
  constructor(kid: string, detail: string) {
    super('JWT_RATE_LIMITED', `agent ${kid}: ${detail}`);
  }
}

/** Codes of refusals for a verified agent that is over a limit: a 429, not a failed authentication. */
export const JWT_THROTTLE_CODES: ReadonlySet<string> = new Set([
  'JWT_REPLAY_CACHE_FULL',
  'JWT_REPLAY_QUOTA',
  'JWT_RATE_LIMITED',
]);

// ---- replay cache ----

/** Default bound on live ids in the whole cache. */
export const DEFAULT_REPLAY_CACHE_ENTRIES = 200_000;
/**
 * Default bound on live ids of one agent. A JWT lives at most 330 s (300 s lifetime and 30 s
 * skew); an agent that reconnects within the hub's connection rate stays far below this.
 */
export const DEFAULT_REPLAY_QUOTA_PER_AGENT = 100;

/**
 * Remembers `jti` values until their JWT expires (plus skew), so each JWT opens one connection.
 * Memory is bounded: at most `maxEntries` live ids, and at most `maxPerAgent` of one agent. When
 * full of unexpired ids, new JWTs are refused rather than old ids forgotten (forgetting would
 * reopen a replay window); the per-agent quota makes that refusal hit only the agent that sent
 * them, as long as fewer than maxEntries / maxPerAgent agents are at their quota at once.
 */
export class ReplayCache {
  /** agent id → (jti → expiry ms). */
  private readonly agents = new Map<string, Map<string, number>>();
  private total = 0;
  private nextSweep = 0;

  constructor(
    private readonly maxEntries = DEFAULT_REPLAY_CACHE_ENTRIES,
    private readonly maxPerAgent = DEFAULT_REPLAY_QUOTA_PER_AGENT,
  ) {}

  /**
   * Records `jti` of `agentId` until `expiresAtMs`; false when it was already recorded. Throws
   * JwtReplayQuotaError when the agent has `maxPerAgent` live ids, JwtReplayCacheFullError when
   * the cache is full.
   */
  remember(agentId: string, jti: string, expiresAtMs: number, nowMs: number): boolean {
    let ids = this.agents.get(agentId);
    const seen = ids?.get(jti);
    if (seen !== undefined && seen > nowMs) return false;
    if (ids && ids.size >= this.maxPerAgent) this.sweepAgent(agentId, ids, nowMs);
    if (ids && ids.size >= this.maxPerAgent) throw new JwtReplayQuotaError(agentId.slice(0, 64), this.maxPerAgent);
    if (this.total >= this.maxEntries || nowMs >= this.nextSweep) this.sweep(nowMs);
    if (this.total >= this.maxEntries) throw new JwtReplayCacheFullError();
    // A sweep may have dropped the agent's (emptied) map.
    ids = this.agents.get(agentId);
    if (!ids) {
      ids = new Map();
      this.agents.set(agentId, ids);
    }
    if (!ids.has(jti)) this.total++;
    ids.set(jti, expiresAtMs);
    return true;
  }

  get size(): number {
    return this.total;
  }

  /** Live ids of one agent (tests, metrics). */
  sizeOf(agentId: string): number {
    return this.agents.get(agentId)?.size ?? 0;
  }

  private sweepAgent(agentId: string, ids: Map<string, number>, nowMs: number): void {
    for (const [jti, exp] of ids) {
      if (exp > nowMs) continue;
      ids.delete(jti);
      this.total--;
    }
    if (ids.size === 0) this.agents.delete(agentId);
  }

  private sweep(nowMs: number): void {
    for (const [agentId, ids] of this.agents) this.sweepAgent(agentId, ids, nowMs);
    this.nextSweep = nowMs + 10_000;
  }
}

/**
 * The `kid` a JWT claims, read from its header without verifying anything (at most 64
 * characters; undefined when there is none or the header does not decode). For keying failed
 * attempts: a claim, never an identity.
 */
export function claimedKid(jwt: string): string | undefined {
  if (jwt.length > MAX_JWT_LENGTH) return undefined;
  try {
    const { kid } = decodeProtectedHeader(jwt);
    return typeof kid === 'string' && kid !== '' ? kid.slice(0, 64) : undefined;
  } catch {
    return undefined;
  }
}

// ---- verification ----

export interface AgentKey {
  publicKey: KeyObject;
  revoked: boolean;
}

export interface VerifyOptions {
  audience: string;
  lookupKey: (kid: string) => AgentKey | undefined;
  replayCache: ReplayCache;
  /** Clock in ms since the epoch (default Date.now()). */
  now?: number;
  /** Tolerated clock skew in seconds, at most 30 (default 30). */
  skewSeconds?: number;
  /**
   * Called for an agent whose JWT verified, before its `jti` is recorded: throws a JwtError (e.g.
   * JwtRateLimitedError) to refuse it. A refused JWT's id is not recorded.
   */
  admit?: (agentId: string) => void;
}

export interface VerifiedAgentJwt {
  agentId: string;
  jti: string;
  expiresAt: number;
}

/** Verifies an agent JWT; throws a JwtError subclass naming the reason. */
export async function verifyAgentJwt(jwt: string, options: VerifyOptions): Promise<VerifiedAgentJwt> {
  const now = options.now ?? Date.now();
  const nowSec = Math.floor(now / 1000);
  const skew = Math.min(options.skewSeconds ?? MAX_CLOCK_SKEW_SECONDS, MAX_CLOCK_SKEW_SECONDS);
  if (jwt.length > MAX_JWT_LENGTH) throw new JwtMalformedError(`longer than ${MAX_JWT_LENGTH} bytes`);
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/.test(jwt))
    throw new JwtMalformedError('not three base64url parts');

  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(jwt);
  } catch (err) {
    throw new JwtMalformedError('header is not base64url JSON', err);
  }
  if (header.alg !== JWT_ALGORITHM) throw new JwtAlgorithmError(header.alg);
  if (header.typ !== undefined && header.typ !== 'JWT') throw new JwtTypeError();
  if (typeof header.kid !== 'string' || header.kid === '') throw new JwtMissingKidError();
  const kid = header.kid.length > 64 ? header.kid.slice(0, 64) + '…' : header.kid;

  const key = options.lookupKey(header.kid);
  if (!key) throw new JwtUnknownAgentError(kid);
  if (key.revoked) throw new JwtRevokedAgentError(kid);

  let payloadBytes: Uint8Array;
  try {
    ({ payload: payloadBytes } = await compactVerify(jwt, key.publicKey, { algorithms: [JWT_ALGORITHM] }));
  } catch (err) {
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) throw new JwtSignatureError(kid, err);
    throw new JwtMalformedError('JWS cannot be verified', err);
  }

  let claims: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(payloadBytes));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('payload is not an object');
    claims = parsed as Record<string, unknown>;
  } catch (err) {
    throw new JwtMalformedError('payload is not a JSON object', err);
  }

  const { aud, iat, exp, nbf, jti } = claims;
  if (typeof iat !== 'number' || typeof exp !== 'number')
    throw new JwtClaimsError(kid, 'iat and exp are required numbers');
  if (typeof jti !== 'string' || jti.length < 8 || jti.length > 128)
    throw new JwtClaimsError(kid, 'jti is required (8 to 128 characters)');
  if (nbf !== undefined && typeof nbf !== 'number') throw new JwtClaimsError(kid, 'nbf must be a number');
  const audiences = Array.isArray(aud) ? aud : [aud];
  if (!audiences.includes(options.audience)) throw new JwtAudienceError(kid);
  if (exp <= nowSec - skew) throw new JwtExpiredError(kid);
  if (iat > nowSec + skew || (typeof nbf === 'number' && nbf > nowSec + skew)) throw new JwtNotYetValidError(kid);
  if (exp - iat > MAX_JWT_LIFETIME_SECONDS || exp <= iat) throw new JwtLifetimeError(kid);

  const expiresAt = (exp + skew) * 1000;
  options.admit?.(header.kid);
  if (!options.replayCache.remember(header.kid, jti, expiresAt, now)) throw new JwtReplayedError(kid);
  return { agentId: header.kid, jti, expiresAt };
}
