import { describe, expect, it } from '@jest/globals';
import type { KubeObject } from './types.js';
import { OWNING_INVENTORY_ANNOTATION, PRUNE_ANNOTATION } from './labels.js';
import { canApply, canPrune, type InventoryPolicy } from './policy.js';

const ours = 'agent1/web';
function live(annotations?: Record<string, string>): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', namespace: 'default', ...(annotations ? { annotations } : {}) } };
}
const owned = live({ [OWNING_INVENTORY_ANNOTATION]: ours });
const foreign = live({ [OWNING_INVENTORY_ANNOTATION]: 'agent2/other' });
const unowned = live();

describe('canApply', () => {
  it.each<[InventoryPolicy, string, KubeObject | undefined, boolean, boolean]>([
    ['must_match', 'absent', undefined, true, false],
    ['must_match', 'ours', owned, true, false],
    ['must_match', 'unowned', unowned, false, false],
    ['must_match', 'foreign', foreign, false, false],
    ['adopt_if_no_inventory', 'absent', undefined, true, false],
    ['adopt_if_no_inventory', 'unowned', unowned, true, true],
    ['adopt_if_no_inventory', 'foreign', foreign, false, false],
    ['adopt_all', 'unowned', unowned, true, true],
    ['adopt_all', 'foreign', foreign, true, true],
    ['adopt_all', 'ours', owned, true, false],
  ])('under %s an object that is %s: allowed=%s', (policy, _what, obj, ok, adopt) => {
    const v = canApply(policy, obj, ours);
    expect(v.ok).toBe(ok);
    if (v.ok) expect(v.adopt ?? false).toBe(adopt);
    else expect(v.reason.length).toBeGreaterThan(0);
  });

  it('names the owning inventory and the way out when refusing', () => {
    const v = canApply('must_match', foreign, ours);
    expect(v).toMatchObject({ ok: false, reason: expect.stringContaining('agent2/other') });
    expect(canApply('must_match', unowned, ours)).toMatchObject({ ok: false, reason: expect.stringContaining('adopt_if_no_inventory') });
  });

  it('accepts the (live, inventoryId, policy) argument order with the same answers', () => {
    expect(canApply(foreign, ours, 'adopt_all')).toEqual(canApply('adopt_all', foreign, ours));
    expect(canApply(unowned, ours, 'must_match')).toEqual(canApply('must_match', unowned, ours));
  });
});

describe('canPrune', () => {
  it('deletes only what this inventory owns', () => {
    expect(canPrune(owned, ours).ok).toBe(true);
    expect(canPrune(foreign, ours)).toMatchObject({ ok: false, reason: expect.stringContaining('agent2/other') });
    expect(canPrune(unowned, ours).ok).toBe(false);
  });

  it('keeps an owned object that opted out of prune', () => {
    expect(canPrune(live({ [OWNING_INVENTORY_ANNOTATION]: ours, [PRUNE_ANNOTATION]: 'disabled' }), ours)).toMatchObject({ ok: false, reason: expect.stringContaining('disabled') });
  });
});
