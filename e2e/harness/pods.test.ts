// The pure parts of e2e/harness/pods.ts: what counts as Ready, kubectl's STATUS and AGE columns, the table.
import { describe, expect, it } from '@jest/globals';
import { allReadySince, formatAge, formatPodTable, isReady, podRows, podSummary, type PodLike } from './pods.js';

const NOW = Date.parse('2026-12-04T12:00:00Z');

function pod(
  name: string,
  extra: {
    phase?: string;
    ready?: boolean;
    deleting?: boolean;
    waiting?: string;
    restarts?: number;
    ageS?: number;
  } = {},
): PodLike {
  return {
    metadata: {
      name,
      creationTimestamp: new Date(NOW - (extra.ageS ?? 5) * 1000).toISOString(),
      ...(extra.deleting ? { deletionTimestamp: new Date(NOW).toISOString() } : {}),
    },
    spec: { containers: [{ name: 'nginx' }] },
    status: {
      phase: extra.phase ?? 'Running',
      conditions: [{ type: 'Ready', status: extra.ready === false ? 'False' : 'True' }],
      containerStatuses: [
        {
          name: 'nginx',
          ready: extra.ready !== false,
          restartCount: extra.restarts ?? 0,
          state: extra.waiting ? { waiting: { reason: extra.waiting } } : { running: {} },
        },
      ],
    },
  };
}

describe('pods as kubectl shows them', () => {
  it.each([
    ['a running, ready pod', pod('a'), true],
    ['a running pod whose probe fails', pod('a', { ready: false }), false],
    ['a pending pod', pod('a', { phase: 'Pending', ready: false }), false],
    ['a ready pod being deleted', pod('a', { deleting: true }), false],
  ])('isReady: %s', (_name, p, expected) => {
    expect(isReady(p)).toBe(expected);
  });

  it.each([
    [0, '0s'],
    [59_999, '59s'],
    [119_000, '119s'],
    [120_000, '2m'],
    [185_000, '3m5s'],
    [7_800_000, '2h10m'],
    [-5, '0s'],
  ])('formatAge(%d) is %s', (ms, expected) => {
    expect(formatAge(ms)).toBe(expected);
  });

  it('puts Terminating before a waiting reason, a waiting reason before the phase, and sorts by name', () => {
    const rows = podRows(
      [
        pod('c', { deleting: true }),
        pod('b', { phase: 'Pending', ready: false, waiting: 'ContainerCreating' }),
        pod('a', { restarts: 2, ageS: 130 }),
      ],
      NOW,
    );
    expect(rows).toEqual([
      { name: 'a', ready: '1/1', status: 'Running', restarts: 2, age: '2m10s' },
      { name: 'b', ready: '0/1', status: 'ContainerCreating', restarts: 0, age: '5s' },
      { name: 'c', ready: '1/1', status: 'Terminating', restarts: 0, age: '5s' },
    ]);
    expect(podSummary([pod('a'), pod('b'), pod('c', { deleting: true })])).toBe('2 Ready, 1 Terminating');
  });

  it('allReadySince: when the last pod turned Ready, only once every one is', () => {
    const readyAt = (p: PodLike, iso: string): PodLike => {
      p.status!.conditions = [{ type: 'Ready', status: 'True', lastTransitionTime: iso }];
      return p;
    };
    const a = readyAt(pod('a'), '2026-12-04T12:00:01Z');
    const b = readyAt(pod('b'), '2026-12-04T12:00:03Z');
    expect(allReadySince([a, b])).toBe(Date.parse('2026-12-04T12:00:03Z'));
    expect(allReadySince([a, pod('c', { ready: false })])).toBeUndefined();
    expect(allReadySince([])).toBeUndefined();
  });

  it('prints the columns padded to the widest cell, as kubectl does', () => {
    const table = formatPodTable(
      podRows(
        [
          pod('nginx-6d4cf56db6-x2x9q'),
          pod('nginx-6d4cf56db6-ab', { ready: false, waiting: 'CrashLoopBackOff', restarts: 3 }),
        ],
        NOW,
      ),
    );
    expect(table.split('\n')).toEqual([
      'NAME                     READY   STATUS             RESTARTS   AGE',
      'nginx-6d4cf56db6-ab      0/1     CrashLoopBackOff   3          5s',
      'nginx-6d4cf56db6-x2x9q   1/1     Running            0          5s',
    ]);
    expect(formatPodTable([])).toBe('No resources found.');
  });
});
