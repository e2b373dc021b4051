/**
 * Numbers for the bench: percentiles over samples, and a process's memory and CPU time read from
 * /proc (Linux), so a child's RSS and CPU seconds come from the kernel, not from the child itself.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** The p-th percentile (0..100) by nearest rank; NaN for no samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/** Rounds to `digits` decimals (numbers in the JSON lines stay short and readable). */
export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** p50/p99/max of millisecond samples, named by unit. */
export function latencySummary(samplesMs: readonly number[]): { p50_ms: number; p99_ms: number; max_ms: number } {
  return {
    p50_ms: round(percentile(samplesMs, 50)),
    p99_ms: round(percentile(samplesMs, 99)),
    max_ms: round(percentile(samplesMs, 100)),
  };
}

export interface ProcStats {
  /** Resident set size now, MiB. */
  rssMib: number;
  /** Peak resident set size, MiB. */
  hwmMib: number;
  /** User + system CPU time so far, seconds. */
  cpuSeconds: number;
}

// Clock ticks per second for /proc/<pid>/stat; 100 on every Linux this runs on (getconf CLK_TCK).
const CLK_TCK = 100;

/** Memory and CPU time of a live process from /proc; throws if it is gone. */
export function procStats(pid: number): ProcStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return {
    rssMib: round(kb('VmRSS') / 1024),
    hwmMib: round(kb('VmHWM') / 1024),
    cpuSeconds: round((utime + stime) / CLK_TCK, 2),
  };
}

/** The 1, 5 and 15 minute load averages, rounded. */
export function loadAverage(): number[] {
  return os.loadavg().map((l) => round(l, 2));
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}
