import { describe, expect, it } from '@jest/globals';
import { nginxDeployment, podReady, rolledOut } from './health.js';

/** The Deployment as the API server shows it, generation 2, with `status` (kstatus reads only these). */
function live(revision: string, status: Record<string, number>): unknown {
  const d = nginxDeployment('ns', revision);
  return { ...d, metadata: { ...d.metadata, generation: 2 }, status };
}

const complete = { observedGeneration: 2, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 };

describe('rolledOut (when the bench says the API shows the rollout complete)', () => {
  it.each<[string, unknown, boolean]>([
    ['every replica updated, ready and available for this generation', live('r1', complete), true],
    ['another revision of the template', live('r0', complete), false],
    ['a generation the controller has not seen yet', live('r1', { ...complete, observedGeneration: 1 }), false],
    ['a pod of the old ReplicaSet still counted', live('r1', { ...complete, replicas: 3 }), false],
    ['one new replica not ready yet', live('r1', { ...complete, readyReplicas: 1, availableReplicas: 1 }), false],
    ['no status at all', live('r1', {}), false],
    ['no object', undefined, false],
  ])('%s: %s', (_what, object, expected) => {
    expect(rolledOut(object, 'r1')).toBe(expected);
  });
});

describe('podReady', () => {
  const pod = (ready: string, deleting = false): unknown => ({
    metadata: { name: 'p', ...(deleting ? { deletionTimestamp: '2026-12-06T21:00:00Z' } : {}) },
    status: { conditions: [{ type: 'Ready', status: ready }] },
  });
  it('counts a pod Ready=True, not one being deleted or not ready', () => {
    expect([pod('True'), pod('True', true), pod('False')].map(podReady)).toEqual([true, false, false]);
  });
});
