// `agent list`'s table: the HEALTH column a person reads per agent and project.
import { describe, expect, it } from '@jest/globals';
import type { AgentListRow, HealthRecord } from '../registry.js';
import { formatTable } from './agent.js';

const at = '2026-01-01T00:00:00.000Z';
const commit = 'a'.repeat(40);
const applied = { commit, digest: 'd', result: 'applied' as const, at };
const health = (over: Partial<HealthRecord>): HealthRecord => ({
  commit,
  digest: 'd',
  result: 'healthy',
  total: 12,
  counts: { current: 12 },
  notCurrent: 0,
  objects: [],
  at,
  ...over,
});
const row = (name: string, status?: AgentListRow['status']): AgentListRow => ({
  id: name.padEnd(32, '0'),
  name,
  configProject: 'group/agents',
  publicKey: 'k',
  createdAt: at,
  ...(status ? { status } : {}),
});

/** The HEALTH cell of each agent's line, found by the header's column positions. */
function healthCells(rows: AgentListRow[]): Record<string, string> {
  const [header, ...lines] = formatTable(rows).trimEnd().split('\n');
  const start = header.indexOf('HEALTH');
  const end = header.indexOf('LAST ERROR');
  return Object.fromEntries(lines.map((l) => [l.split(' ')[0], l.slice(start, end).trim()]));
}

describe('agent list HEALTH column', () => {
  it('says each result with the objects that matter, - for an agent that reports none, and names projects when several', () => {
    const cells = healthCells([
      row('healthy', { connected: true, sessions: 1, applied: { p: applied }, health: { p: health({}) } }),
      row('degraded', {
        connected: true,
        sessions: 1,
        applied: { p: applied },
        health: { p: health({ result: 'degraded', counts: { current: 11, failed: 1 }, notCurrent: 1 }) },
      }),
      row('progressing', {
        connected: true,
        sessions: 1,
        applied: { p: applied },
        health: { p: health({ result: 'progressing', counts: { current: 9, in_progress: 3 }, notCurrent: 3 }) },
      }),
      row('timed-out', {
        connected: true,
        sessions: 1,
        applied: { p: applied },
        health: { p: health({ result: 'timed_out', counts: { current: 10, in_progress: 2 }, notCurrent: 2 }) },
      }),
      row('v1-agent', { connected: true, sessions: 1, applied: { p: applied } }),
      row('never-seen'),
      row('two-projects', {
        connected: true,
        sessions: 1,
        applied: { 'group/app': applied, 'group/db': applied },
        health: {
          'group/db': health({ result: 'degraded', total: 4, counts: { current: 3, failed: 1 }, notCurrent: 1 }),
        },
      }),
    ]);
    expect(cells).toEqual({
      healthy: 'healthy',
      degraded: 'degraded 1/12',
      progressing: 'progressing 3/12',
      'timed-out': 'timed_out 2/12',
      'v1-agent': '-',
      'never-seen': '-',
      'two-projects': 'group/app:-,group/db:degraded 1/4',
    });
  });
});
