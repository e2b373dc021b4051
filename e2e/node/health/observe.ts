/**
 * Health as a user of the e2e stack (e2e/harness/stack.ts) sees it: the agent's one log line per
 * result change (`commit healthy`, `commit degraded`, `commit timed out`) and the health that
 * `gitops-server agent list -o json` shows per manifest project. Waits poll real conditions with
 * generous timeouts; a timeout says what was last seen and ends with both programs' log tails.
 */
import type { LogRecord, Stack } from '../../harness/stack.js';
import { AGENT_NAME, MANIFEST_PROJECT } from '../../harness/stack.js';
import { waitFor } from '../../harness/wait.js';
import type { HealthResult } from '../../../src/protocol/vocabulary.js';
import type { AgentListRow } from '../../../src/server/registry.js';
import type { HealthObjectRecord, HealthRecord } from '../../../src/server/state-files.js';

/** The agent's log message for each settled result. */
export const HEALTH_LOG: Record<Exclude<HealthResult, 'progressing'>, string> = {
  healthy: 'commit healthy',
  degraded: 'commit degraded',
  timed_out: 'commit timed out',
};
const HEALTH_MESSAGES = new Set(Object.values(HEALTH_LOG));

/** One object of a listed health record (the server lists only those not current). */
export type ListedObject = HealthObjectRecord;
/** A project's health as `agent list -o json` shows it. */
export type ListedHealth = HealthRecord;

/** The manifest project's health in one agent list row (undefined before the first report). */
export function listedHealth(row: AgentListRow | undefined): ListedHealth | undefined {
  return row?.status?.health?.[MANIFEST_PROJECT];
}

/** When a line was logged (the programs log ISO times), in ms since the epoch. */
export function logTime(line: LogRecord): number {
  return Date.parse(String(line.time));
}

/** The agent's health log lines, oldest first (optionally for one commit only). */
export async function healthLines(stack: Stack, commit?: string): Promise<LogRecord[]> {
  const agent = stack.agent;
  if (!agent) throw new Error('the agent is not running');
  return (await stack.logs(agent)).filter(
    (r) => HEALTH_MESSAGES.has(r.msg ?? '') && (commit === undefined || r.commit === commit),
  );
}

async function withTails<T>(stack: Stack, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${await stack.logTails(30)}`, { cause: err });
  }
}

/**
 * The agent's first health line for `commit`; its `ms` is from `since` to the line's own time
 * (pino's `time`), so polling adds nothing to the measured number. A line with another result
 * for the commit fails at once, naming it.
 */
export async function waitForHealthLine(
  stack: Stack,
  commit: string,
  result: Exclude<HealthResult, 'progressing'>,
  since: number,
  timeoutMs = 60_000,
): Promise<{ line: LogRecord; ms: number }> {
  return withTails(stack, async () => {
    const line = await stack.waitForLog(
      stack.agent!,
      (r) => HEALTH_MESSAGES.has(r.msg ?? '') && r.commit === commit,
      timeoutMs,
      `${HEALTH_LOG[result]} for ${commit.slice(0, 8)}`,
    );
    if (line.msg !== HEALTH_LOG[result])
      throw new Error(`expected "${HEALTH_LOG[result]}" for ${commit}, the agent logged ${JSON.stringify(line)}`);
    return { line, ms: logTime(line) - since };
  });
}

/** Polls `agent list -o json` until the project's health for `commit` satisfies `check`. */
export async function waitForListedHealth(
  stack: Stack,
  commit: string,
  check: (h: ListedHealth) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<ListedHealth> {
  let last: ListedHealth | undefined;
  return withTails(stack, async () => {
    try {
      return await waitFor(
        async () => {
          const row = (await stack.agentList()).find((r) => r.name === AGENT_NAME);
          last = listedHealth(row);
          return last?.commit === commit && check(last) ? last : undefined;
        },
        timeoutMs,
        `agent list: ${what} for ${commit.slice(0, 8)}`,
        100,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; last listed health: ${JSON.stringify(last)}`, { cause: err });
    }
  });
}

/** True when nothing keeps the commit from healthy: no object listed, none counted as not current. */
export function allCurrent(health: ListedHealth): boolean {
  return health.notCurrent === 0 && health.objects.length === 0 && (health.counts.current ?? 0) > 0;
}

/** The listed (not current) object with `id`, or a failure naming what was listed. */
export function objectIn(health: ListedHealth, id: string): ListedObject {
  const found = health.objects.find((o) => o.id === id);
  if (!found) throw new Error(`${id} not in the listed health: ${JSON.stringify(health.objects)}`);
  return found;
}
