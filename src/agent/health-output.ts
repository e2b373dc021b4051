/**
 * Health as people read it, one form for the agent's log lines and `gitops-agent apply --wait`:
 * a line per object that is not current (`Deployment/demo/web failed: ImagePullBackOff: ...`) and
 * the result line (`health: timed_out after 3.00s`), plus the CLI's exit code per result. Pure.
 */
import { formatDuration } from '../common/duration.js';
import type { HealthResult } from '../protocol/vocabulary.js';
import type { HealthReport, ObjectHealthEntry } from './health/types.js';

/** Not-current objects named in one log line; the rest are counted (a log line has a bound too). */
export const LOGGED_OBJECTS = 20;

/**
 * `gitops-agent apply --wait` exit status per health result (1 stays "the apply failed"; 2 is
 * left unused so a wrapper can tell usage errors of its own apart). `progressing` is what
 * `--timeout 0` reports for a set that is not current yet: as good as timed out.
 */
export const WAIT_EXIT_CODES: Record<HealthResult, number> = {
  healthy: 0,
  degraded: 3,
  timed_out: 4,
  progressing: 4,
};

/** What an object's state is about: the message, led by the reason when the message does not name it. */
export function healthText(entry: Pick<ObjectHealthEntry, 'reason' | 'message'>): string {
  const { reason, message } = entry;
  if (!message) return reason;
  if (!reason || message.includes(reason)) return message;
  return `${reason}: ${message}`;
}

/** `Deployment/demo/web in_progress: 0/1 replicas available` (`(pruned)` after the id of a pruned object). */
export function healthLine(entry: ObjectHealthEntry): string {
  const text = healthText(entry);
  return `${entry.id}${entry.pruned ? ' (pruned)' : ''} ${entry.state}${text ? `: ${text}` : ''}`;
}

/** Done: current, or pruned and gone (`not_found`). */
export function isDone(entry: ObjectHealthEntry): boolean {
  return entry.state === 'current' || (entry.pruned === true && entry.state === 'not_found');
}

/** Objects still keeping the commit from healthy, in the report's order (failed first). */
export function notCurrent(report: HealthReport): ObjectHealthEntry[] {
  return report.objects.filter((o) => !isDone(o));
}

/** The not-current objects as log fields, at most LOGGED_OBJECTS lines and the count of the rest. */
export function notCurrentFields(report: HealthReport): { notCurrent?: string[]; moreNotCurrent?: number } {
  const lines = notCurrent(report).map(healthLine);
  if (lines.length === 0) return {};
  return {
    notCurrent: lines.slice(0, LOGGED_OBJECTS),
    ...(lines.length > LOGGED_OBJECTS ? { moreNotCurrent: lines.length - LOGGED_OBJECTS } : {}),
  };
}

/** `health: healthy after 1.20s`, `health: degraded after 4.00s (1 of 3 objects not current)` (pruned ones count). */
export function healthSummary(report: HealthReport): string {
  const waited = report.waitedMs === undefined ? '' : ` after ${formatDuration(report.waitedMs)}`;
  const pending = notCurrent(report).length;
  const of = pending ? ` (${pending} of ${report.objects.length} objects not current)` : '';
  return `health: ${report.result}${waited}${of}`;
}
