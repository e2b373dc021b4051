/**
 * Inventory policy as pure decisions, as in cli-utils' `CanApply` / `CanPrune`: whether this
 * inventory may write to a live object, and whether it may delete one. Ownership is the
 * `gitops.dev/owning-inventory` annotation; GitLab's `inventory_policy` values decide adoption.
 */
import type { InventoryPolicy } from '../../protocol/vocabulary.js';
import type { KubeObject } from '../kube/types.js';
import { OWNING_INVENTORY_ANNOTATION, PRUNE_ANNOTATION, pruneDisabled } from './labels.js';

/** A decision: allowed, or refused with why (for people: it names the way out). */
export type Verdict = { allowed: true } | { allowed: false; reason: string };

const yes: Verdict = { allowed: true };
const no = (reason: string): Verdict => ({ allowed: false, reason });

function ownerOf(live: KubeObject): string | undefined {
  const owner = live.metadata?.annotations?.[OWNING_INVENTORY_ANNOTATION];
  return owner ? owner : undefined;
}

/**
 * May this inventory apply to `live`? Absent objects may always be created; objects we own may
 * always be updated; an unowned object is adopted unless the policy is `must_match`; an object
 * owned by another inventory is taken over only under `adopt_all`.
 */
export function canApply(live: KubeObject | undefined, inventoryId: string, policy: InventoryPolicy): Verdict {
  if (!live) return yes;
  const owner = ownerOf(live);
  if (owner === inventoryId || policy === 'adopt_all') return yes;
  if (owner !== undefined) {
    return no(
      `owned by inventory ${owner}, not ${inventoryId}: remove it from that inventory's manifests first, or set inventory_policy: adopt_all to take it over`,
    );
  }
  if (policy === 'must_match')
    return no(
      'exists and is not managed by any inventory (inventory_policy must_match): delete it, or set inventory_policy: adopt_if_no_inventory to adopt it',
    );
  return yes;
}

/**
 * May this inventory delete `live`? Only objects it owns, and not when they opted out with
 * `gitops.dev/prune: disabled`.
 */
export function canPrune(live: KubeObject, inventoryId: string): Verdict {
  const owner = ownerOf(live);
  if (owner !== inventoryId)
    return no(
      owner
        ? `owned by inventory ${owner}, not ${inventoryId}: not deleted`
        : 'not owned by this inventory (no owning-inventory annotation): not deleted',
    );
  if (pruneDisabled(live.metadata?.annotations)) return no(`annotated ${PRUNE_ANNOTATION}: disabled: kept`);
  return yes;
}
