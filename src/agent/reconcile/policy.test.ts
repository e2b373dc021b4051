import { describe, expect, it } from '@jest/globals';
import type { InventoryPolicy } from '../../protocol/vocabulary.js';
import type { KubeObject } from '../kube/types.js';
import { OWNING_INVENTORY_ANNOTATION, PRUNE_ANNOTATION } from './labels.js';
import { canApply, canPrune } from './policy.js';

const ours = 'agent1/web';
function live(annotations?: Record<string, string>): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'c', namespace: 'default', ...(annotations ? { annotations } : {}) },
  };
}
const owned = live({ [OWNING_INVENTORY_ANNOTATION]: ours });
const foreign = live({ [OWNING_INVENTORY_ANNOTATION]: 'agent2/other' });
const unowned = live();

describe('canApply (as apply.ts calls it: live, inventory id, policy)', () => {
  it.each<[InventoryPolicy, string, KubeObject | undefined, boolean]>([
    ['must_match', 'absent', undefined, true],
    ['must_match', 'ours', owned, true],
    ['must_match', 'unowned', unowned, false],
    ['must_match', 'foreign', foreign, false],
    ['adopt_if_no_inventory', 'absent', undefined, true],
    ['adopt_if_no_inventory', 'ours', owned, true],
    ['adopt_if_no_inventory', 'unowned', unowned, true],
    ['adopt_if_no_inventory', 'foreign', foreign, false],
    ['adopt_all', 'unowned', unowned, true],
    ['adopt_all', 'foreign', foreign, true],
    ['adopt_all', 'ours', owned, true],
  ])('under %s an object that is %s: allowed=%s', (policy, _what, obj, allowed) => {
    const v = canApply(obj, ours, policy);
    expect(v.allowed).toBe(allowed);
    if (!v.allowed) expect(v.reason.length).toBeGreaterThan(0);
    else expect(v).toEqual({ allowed: true });
  });

  it('names the owning inventory and the way out when refusing', () => {
    expect(canApply(foreign, ours, 'adopt_if_no_inventory')).toEqual({
      allowed: false,
      reason: expect.stringMatching(/agent2\/other.*adopt_all/),
    });
    expect(canApply(unowned, ours, 'must_match')).toEqual({
      allowed: false,
      reason: expect.stringContaining('adopt_if_no_inventory'),
    });
  });
});

describe('canPrune (as prune.ts calls it: live, inventory id)', () => {
  it('deletes only what this inventory owns', () => {
    expect(canPrune(owned, ours)).toEqual({ allowed: true });
    expect(canPrune(foreign, ours)).toEqual({ allowed: false, reason: expect.stringContaining('agent2/other') });
    expect(canPrune(unowned, ours).allowed).toBe(false);
  });

  it('keeps an owned object that opted out of prune', () => {
    expect(canPrune(live({ [OWNING_INVENTORY_ANNOTATION]: ours, [PRUNE_ANNOTATION]: 'disabled' }), ours)).toEqual({
      allowed: false,
      reason: expect.stringContaining('disabled'),
    });
  });
});
