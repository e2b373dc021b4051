/**
 * Reconnect delays: capped exponential backoff with full jitter (AWS architecture blog, "Exponential
 * Backoff And Jitter"): attempt n waits a uniform random time in [0, min(cap, base * 2^n)], so a
 * fleet of agents that lost the same server does not reconnect in lock step. Pure: the random
 * source is injected.
 */

export interface BackoffPolicy {
  /** First ceiling, in milliseconds. */
  baseMs: number;
  /** Largest ceiling, in milliseconds. */
  capMs: number;
  /** Lowest delay ever returned (keeps a zero draw from becoming a busy loop). */
  minMs?: number;
}

/** Delays for reconnecting to the server: 0.5 s growing to 30 s. */
export const RECONNECT_BACKOFF: BackoffPolicy = { baseMs: 500, capMs: 30_000, minMs: 100 };
/** Delays after the server refused our credentials: a person has to act, so retry slowly. */
export const UNAUTHORIZED_BACKOFF: BackoffPolicy = { baseMs: 30_000, capMs: 5 * 60_000, minMs: 15_000 };

/** The ceiling for attempt `attempt` (0-based): min(cap, base * 2^attempt). */
export function backoffCeiling(policy: BackoffPolicy, attempt: number): number {
  // 2^31 already exceeds any sane cap; clamping the exponent avoids Infinity for huge attempt counts.
  const exp = Math.min(Math.max(attempt, 0), 31);
  return Math.min(policy.capMs, policy.baseMs * 2 ** exp);
}

/** A full-jitter delay for attempt `attempt` (0-based); `random` returns [0, 1). */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const ceiling = backoffCeiling(policy, attempt);
  const min = Math.min(policy.minMs ?? 0, ceiling);
  return Math.round(min + random() * (ceiling - min));
}
