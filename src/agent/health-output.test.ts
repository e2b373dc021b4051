import { describe, expect, it } from '@jest/globals';
import type { HealthReport, ObjectHealthEntry } from './health/types.js';
import {
  healthLine,
  healthSummary,
  healthText,
  notCurrent,
  notCurrentFields,
  WAIT_EXIT_CODES,
} from './health-output.js';

const entry = (over: Partial<ObjectHealthEntry>): ObjectHealthEntry => ({
  id: 'Deployment/demo/web',
  state: 'in_progress',
  reason: '',
  message: '',
  ...over,
});

describe('health output', () => {
  it.each([
    [
      { reason: 'ImagePullBackOff', message: 'ImagePullBackOff: Back-off pulling image "x"' },
      'ImagePullBackOff: Back-off pulling image "x"',
    ],
    [{ reason: 'LessAvailable', message: '0/1 replicas available' }, 'LessAvailable: 0/1 replicas available'],
    [{ reason: 'Established', message: '' }, 'Established'],
    [{ reason: '', message: 'waiting for the controller' }, 'waiting for the controller'],
  ])('says what an object is about: %j', (e, text) => {
    expect(healthText(e)).toBe(text);
  });

  it('lists only what is not done, failed first as the report has it, pruned objects marked', () => {
    const report: HealthReport = {
      unit: 'u',
      result: 'degraded',
      waitedMs: 4_000,
      objects: [
        entry({ state: 'failed', reason: 'CrashLoopBackOff', message: 'back-off 10s restarting failed container' }),
        entry({ id: 'ConfigMap/demo/old', state: 'terminating', reason: 'Deleting', pruned: true }),
        entry({ id: 'ConfigMap/demo/gone', state: 'not_found', reason: 'Deleted', pruned: true }),
        entry({ id: 'Service/demo/web', state: 'current', reason: 'Exists' }),
      ],
    };
    expect(notCurrent(report).map(healthLine)).toEqual([
      'Deployment/demo/web failed: CrashLoopBackOff: back-off 10s restarting failed container',
      'ConfigMap/demo/old (pruned) terminating: Deleting',
    ]);
    expect(healthSummary(report)).toBe('health: degraded after 4.00s (2 of 4 objects not current)');
    expect(healthSummary({ unit: 'u', result: 'healthy', objects: [], waitedMs: 3 })).toBe('health: healthy after 3ms');
  });

  it('bounds the objects named in a log line', () => {
    const objects = Array.from({ length: 25 }, (_, i) => entry({ id: `ConfigMap/demo/c${i}` }));
    const fields = notCurrentFields({ unit: 'u', result: 'timed_out', objects });
    expect(fields.notCurrent).toHaveLength(20);
    expect(fields.moreNotCurrent).toBe(5);
    expect(notCurrentFields({ unit: 'u', result: 'healthy', objects: [] })).toEqual({});
  });

  it('gives each result of --wait its own exit status, 1 staying "the apply failed"', () => {
    expect(WAIT_EXIT_CODES).toEqual({ healthy: 0, degraded: 3, timed_out: 4, progressing: 4 });
  });
});
