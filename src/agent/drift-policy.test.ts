import { describe, expect, it } from '@jest/globals';
import type { ManagedFieldsEntry } from './kube/types.js';
import {
  DEFAULT_FIGHT_POLICY,
  driftManager,
  holdRemaining,
  NO_FIGHT,
  ownsPath,
  recordRevert,
  type FightState,
} from './drift-policy.js';

describe('driftManager', () => {
  const entries: ManagedFieldsEntry[] = [
    {
      manager: 'gitops-agent',
      operation: 'Update',
      time: '2026-11-25T10:00:05Z',
      fieldsV1: { 'f:spec': { 'f:replicas': {} } },
    },
    {
      manager: 'kube-controller-manager',
      operation: 'Update',
      subresource: 'status',
      time: '2026-11-25T10:00:09Z',
      fieldsV1: { 'f:status': {} },
    },
    {
      manager: 'kubectl-edit',
      operation: 'Update',
      time: '2026-11-25T10:00:03Z',
      fieldsV1: {
        'f:spec': { 'f:template': { 'f:spec': { 'f:containers': { 'k:{"name":"nginx"}': { 'f:image': {} } } } } },
      },
    },
    {
      manager: 'hpa',
      operation: 'Update',
      time: '2026-11-25T10:00:07Z',
      fieldsV1: { 'f:metadata': { 'f:annotations': {} } },
    },
  ];

  it('names the manager that owns the patched field even when another wrote later', () => {
    expect(
      driftManager(entries, 'gitops-agent', [
        { op: 'replace', path: '/spec/template/spec/containers/0/image', value: 'nginx' },
      ]),
    ).toBe('kubectl-edit');
  });

  it('falls back to the latest writer that is not us and not a status writer', () => {
    expect(driftManager(entries, 'gitops-agent', [{ op: 'add', path: '/spec/paused', value: false }])).toBe('hpa');
  });

  it('knows nobody when only we (and status writers) touched the object', () => {
    expect(
      driftManager(entries.slice(0, 2), 'gitops-agent', [{ op: 'replace', path: '/spec/replicas', value: 2 }]),
    ).toBeUndefined();
  });

  it.each([
    ['/spec/replicas', true],
    ['/spec/replicas/x', false],
    ['/spec/template', false],
    ['/metadata/labels/a~1b', true],
    ['/spec/containers/3/image', true],
  ])('reads ownership of %s from fieldsV1', (path, owned) => {
    expect(
      ownsPath(
        { 'f:spec': { 'f:replicas': {}, 'f:containers': {} }, 'f:metadata': { 'f:labels': { 'f:a/b': {} } } },
        path,
      ),
    ).toBe(owned);
  });
});

describe('recordRevert', () => {
  const policy = {
    ...DEFAULT_FIGHT_POLICY,
    threshold: 3,
    windowMs: 10_000,
    baseHoldMs: 1000,
    capHoldMs: 4000,
    calmMs: 20_000,
  };

  function run(times: number[]): Array<{ fight: boolean; holdMs: number }> {
    let state: FightState = NO_FIGHT;
    return times.map((t) => {
      const d = recordRevert(state, t, policy);
      state = d.state;
      return { fight: d.fight, holdMs: d.holdMs };
    });
  }

  it('lets occasional reverts through without a hold', () => {
    expect(run([0, 11_000, 22_000, 33_000]).every((d) => !d.fight && d.holdMs === 0)).toBe(true);
  });

  it('calls the third revert within the window a fight and doubles the hold up to the cap', () => {
    expect(run([0, 100, 200, 1300, 3400, 7500, 11_600])).toEqual([
      { fight: false, holdMs: 0 },
      { fight: false, holdMs: 0 },
      { fight: true, holdMs: 1000 },
      { fight: true, holdMs: 2000 },
      { fight: true, holdMs: 4000 },
      { fight: true, holdMs: 4000 },
      { fight: true, holdMs: 4000 },
    ]);
  });

  it('forgets a fight after a quiet spell', () => {
    const d = run([0, 100, 200, 200 + 1000 + 20_001]);
    expect(d[3]).toEqual({ fight: false, holdMs: 0 });
  });

  it('reports how long a revert must still wait', () => {
    const d = recordRevert({ reverts: [0, 1], level: 0, holdUntil: 0, lastRevertAt: 1 }, 2, policy);
    expect(holdRemaining(d.state, 502)).toBe(500);
    expect(holdRemaining(d.state, 5000)).toBe(0);
  });
});
