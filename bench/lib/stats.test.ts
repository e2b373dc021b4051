import { describe, expect, it } from '@jest/globals';
import { latencySummary, percentile, procStats } from './stats.js';

describe('percentile', () => {
  it('takes the nearest rank, so p99 of 100 samples is the 99th smallest and p100 the largest', () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(samples, 50)).toBe(50);
    expect(percentile(samples, 99)).toBe(99);
    expect(percentile(samples, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
  });

  it('is NaN without samples rather than a made-up zero', () => {
    expect(percentile([], 50)).toBeNaN();
  });
});

describe('latencySummary', () => {
  it('names p50, p99 and max in milliseconds, rounded to 0.1', () => {
    expect(latencySummary([1.04, 2.06, 3, 40.55])).toEqual({ p50_ms: 2.1, p99_ms: 40.6, max_ms: 40.6 });
  });
});

describe('procStats', () => {
  it('reads this process RSS and CPU time from /proc', () => {
    const s = procStats(process.pid);
    expect(s.rssMib).toBeGreaterThan(10);
    expect(s.hwmMib).toBeGreaterThanOrEqual(s.rssMib);
    expect(s.cpuSeconds).toBeGreaterThan(0);
  });
});
