import { describe, expect, it } from '@jest/globals';
import { FailureWindows, RateLimiter } from './admission.js';

describe('RateLimiter (token bucket per key, injected clock)', () => {
  it('allows a burst, then the refill rate, per key', () => {
    const limiter = new RateLimiter({ burst: 3, perMinute: 6 });
    const taken = Array.from({ length: 5 }, () => limiter.take('a', 0));
    expect(taken).toEqual([true, true, true, false, false]);
    expect(limiter.take('b', 0)).toBe(true);
    expect(limiter.retryAfterMs('a', 0)).toBe(10_000);
    expect(limiter.take('a', 9_999)).toBe(false);
    expect(limiter.take('a', 10_000)).toBe(true);
    // A minute idle refills at most to the burst.
    expect(Array.from({ length: 5 }, () => limiter.take('a', 600_000)).filter(Boolean)).toHaveLength(3);
  });

  it('holds 2,000 attempts of one key to burst plus refill, and another key is untouched', () => {
    const limiter = new RateLimiter({ burst: 20, perMinute: 10 });
    let admitted = 0;
    for (let i = 0; i < 2000; i++) if (limiter.take('leaked', i * 30)) admitted++; // 2,000 in 60 s
    expect(admitted).toBe(20 + 9); // the burst, then one per 6 s within the 59.97 s
    expect(limiter.take('other', 60_000)).toBe(true);
  });

  it('stays within maxKeys, dropping full buckets first', () => {
    const limiter = new RateLimiter({ burst: 2, perMinute: 60 }, 3);
    limiter.take('busy', 0);
    limiter.take('busy', 0);
    for (const k of ['x', 'y', 'z', 'w']) limiter.take(k, 0);
    expect(limiter.size).toBeLessThanOrEqual(3);
  });
});

describe('FailureWindows', () => {
  it('locks a key at the limit until its window ends, other keys unaffected', () => {
    const windows = new FailureWindows({ max: 3, windowMs: 1000 });
    expect([1, 2, 3].map(() => windows.record('10.0.0.1 agent-a', 0))).toEqual([1, 2, 3]);
    expect(windows.locked('10.0.0.1 agent-a', 500)).toBe(true);
    expect(windows.locked('10.0.0.1 agent-b', 500)).toBe(false);
    expect(windows.locked('10.0.0.1 agent-a', 1000)).toBe(false);
    expect(windows.record('10.0.0.1 agent-a', 1000)).toBe(1);
  });

  it('stays within maxKeys whatever keys arrive', () => {
    const windows = new FailureWindows({ max: 3, windowMs: 60_000 }, 100);
    for (let i = 0; i < 10_000; i++) windows.record(`1.2.3.4 kid-${i}`, i);
    expect(windows.size).toBeLessThanOrEqual(100);
  });
});
