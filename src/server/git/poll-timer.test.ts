// Fixed-rate poll timer: the grid arithmetic, and ticks that keep their period while checks run.
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { nextDue, startPollTimer } from './poll-timer.js';

describe('nextDue', () => {
  it('is one period after the previous grid point when the tick was on time or a little late', () => {
    expect(nextDue(1000, 1000, 1000)).toBe(2000);
    expect(nextDue(1000, 1400, 1000)).toBe(2000);
  });

  it('skips the grid points a stall missed instead of replaying them', () => {
    expect(nextDue(1000, 2000, 1000)).toBe(3000);
    expect(nextDue(1000, 4500, 1000)).toBe(5000);
  });
});

describe('startPollTimer', () => {
  beforeEach(() => {
    jest.useFakeTimers();
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('starts checks on a fixed grid however long each check takes, so the period does not drift', async () => {
    const starts: number[] = [];
    const t0 = performance.now();
    // A check taking 300 ms of every 1,000 ms period: with "next poll after the check ends" the
    // starts would be 1,000, 2,300, 3,600, ...
    const timer = startPollTimer(
      () => {
        starts.push(performance.now() - t0);
        void new Promise((resolve) => setTimeout(resolve, 300));
      },
      1000,
      1000,
    );
    await jest.advanceTimersByTimeAsync(5000);
    timer.stop();
    expect(starts.map(Math.round)).toEqual([1000, 2000, 3000, 4000, 5000]);
  });

  it('does not tick again after stop', async () => {
    const tick = jest.fn();
    const timer = startPollTimer(tick, 1000, 500);
    await jest.advanceTimersByTimeAsync(1600);
    timer.stop();
    await jest.advanceTimersByTimeAsync(5000);
    expect(tick).toHaveBeenCalledTimes(2);
  });
});
