/**
 * Who may open an agent session, decided without I/O and with an injected clock (unit-tested):
 *
 * - `RateLimiter`: a token bucket per key (the hub keys it by verified agent id), so one agent's
 *   leaked token or reconnect loop spends only that agent's upgrades.
 * - `FailureWindows`: failed attempts counted per key in fixed windows (the hub keys them by client
 *   address + claimed agent id), so an address that keeps failing for one agent is slowed down
 *   without touching other agents behind the same proxy.
 *
 * Both hold at most `maxKeys` keys: when full, idle (full or expired) entries go first, then the
 * oldest, so memory is bounded whatever the keys an attacker invents.
 */

export interface RateLimit {
  /** Upgrades allowed at once (bucket size). */
  burst: number;
  /** Upgrades regained per minute. */
  perMinute: number;
}

/** Default per-agent connection rate: a burst of 20, then 10 a minute. */
export const DEFAULT_AGENT_CONNECT_RATE: RateLimit = { burst: 20, perMinute: 10 };

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limit: RateLimit,
    private readonly maxKeys = 100_000,
  ) {}

  /** Takes one token for `key`; false when its bucket is empty (the caller refuses). */
  take(key: string, nowMs: number): boolean {
    const bucket = this.refill(key, nowMs);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Milliseconds until `key` has a token again (0 when it has one). */
  retryAfterMs(key: string, nowMs: number): number {
    const bucket = this.refill(key, nowMs);
    return bucket.tokens >= 1 ? 0 : Math.ceil(((1 - bucket.tokens) * 60_000) / this.limit.perMinute);
  }

  get size(): number {
    return this.buckets.size;
  }

  private refill(key: string, nowMs: number): Bucket {
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= this.maxKeys) this.evict(nowMs);
      bucket = { tokens: this.limit.burst, at: nowMs };
      this.buckets.set(key, bucket);
      return bucket;
    }
    const elapsed = Math.max(0, nowMs - bucket.at);
    bucket.tokens = Math.min(this.limit.burst, bucket.tokens + (elapsed * this.limit.perMinute) / 60_000);
    bucket.at = nowMs;
    return bucket;
  }

  private evict(nowMs: number): void {
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((nowMs - b.at) * this.limit.perMinute) / 60_000 >= this.limit.burst) this.buckets.delete(key);
    }
    // Still full: the oldest entry goes (Map order is insertion order).
    if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as string);
  }
}

export interface FailureLimit {
  /** Failures per key and window after which the key is locked until the window ends. */
  max: number;
  windowMs: number;
}

/** Default lockout: 20 failures a minute per client address and claimed agent. */
export const DEFAULT_FAILURE_LIMIT: FailureLimit = { max: 20, windowMs: 60_000 };

interface Window {
  count: number;
  resetAt: number;
}

export class FailureWindows {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly limit: FailureLimit,
    private readonly maxKeys = 10_000,
  ) {}

  /** Counts a failure for `key`; returns the count in the current window. */
  record(key: string, nowMs: number): number {
    const w = this.windows.get(key);
    if (w && w.resetAt > nowMs) return ++w.count;
    if (w) this.windows.delete(key);
    else if (this.windows.size >= this.maxKeys) this.evict(nowMs);
    this.windows.set(key, { count: 1, resetAt: nowMs + this.limit.windowMs });
    return 1;
  }

  /** True while `key` has reached the limit in its current window. */
  locked(key: string, nowMs: number): boolean {
    const w = this.windows.get(key);
    return Boolean(w && w.resetAt > nowMs && w.count >= this.limit.max);
  }

  get size(): number {
    return this.windows.size;
  }

  private evict(nowMs: number): void {
    for (const [key, w] of this.windows) if (w.resetAt <= nowMs) this.windows.delete(key);
    if (this.windows.size >= this.maxKeys) this.windows.delete(this.windows.keys().next().value as string);
  }
}
