import { describe, expect, it } from '@jest/globals';
import { backoffCeiling, backoffDelay, RECONNECT_BACKOFF } from './backoff.js';

describe('backoffCeiling', () => {
  it.each([
    [0, 500],
    [1, 1000],
    [3, 4000],
    [6, 30_000],
    [1000, 30_000],
  ])('after %p failed attempts waits at most %p ms', (attempt, ceiling) => {
    expect(backoffCeiling(RECONNECT_BACKOFF, attempt)).toBe(ceiling);
  });
});

describe('backoffDelay', () => {
  it('spreads delays over the whole range up to the ceiling (full jitter)', () => {
    expect(backoffDelay({ baseMs: 1000, capMs: 8000 }, 3, () => 0)).toBe(0);
    expect(backoffDelay({ baseMs: 1000, capMs: 8000 }, 3, () => 0.5)).toBe(4000);
    expect(backoffDelay({ baseMs: 1000, capMs: 8000 }, 3, () => 0.999999)).toBe(8000);
  });

  it('never returns less than the minimum so a zero draw cannot become a busy loop', () => {
    expect(backoffDelay(RECONNECT_BACKOFF, 0, () => 0)).toBe(100);
  });

  it('never exceeds the cap however many attempts failed', () => {
    for (let attempt = 0; attempt < 100; attempt++) {
      expect(backoffDelay(RECONNECT_BACKOFF, attempt, () => 0.9999)).toBeLessThanOrEqual(30_000);
    }
  });
});
