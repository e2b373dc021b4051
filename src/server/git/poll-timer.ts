/**
 * Fixed-rate polling for the Git source: checks START on a fixed grid (first + k × period), not a
 * period after the previous check ended, so the real period is the configured one and not
 * "period + one Git round trip" (more on a loaded machine), which is what bounds the worst-case
 * commit-to-cluster latency when only polling. The timer never overlaps checks itself: it only
 * asks its caller to run one, and the caller (GitWatcher.schedule) coalesces a tick that lands on
 * a running check into one check right after it. A timer that fires late (a busy event loop)
 * does not push the grid back; one that missed whole periods (a suspended machine) fires once and
 * goes on at the next grid point in the future instead of catching up with a burst.
 */

/**
 * The first grid point strictly after `now`, given the previous one: normally `previous + period`;
 * after a stall, the next multiple of `period` past `now` (missed ticks are skipped, not replayed).
 */
export function nextDue(previous: number, now: number, periodMs: number): number {
  const next = previous + periodMs;
  if (next > now) return next;
  return previous + periodMs * (Math.floor((now - previous) / periodMs) + 1);
}

/** A running fixed-rate timer; `stop` cancels the next tick (a check in flight is the caller's). */
export interface PollTimer {
  stop(): void;
}

/**
 * Calls `tick` at `firstDelayMs` from now, then every `periodMs` on that grid, until stopped.
 * The timer is unref'd: polling alone never keeps the process alive.
 */
export function startPollTimer(tick: () => void, periodMs: number, firstDelayMs: number): PollTimer {
  let due = performance.now() + firstDelayMs;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const arm = (): void => {
    timer = setTimeout(
      () => {
        if (stopped) return;
        due = nextDue(due, performance.now(), periodMs);
        // Armed before the tick runs so a throwing tick cannot stop polling.
        arm();
        tick();
      },
      Math.max(0, due - performance.now()),
    );
    timer.unref();
  };
  arm();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
