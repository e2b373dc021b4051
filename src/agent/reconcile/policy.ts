/**
 * Inventory policy as pure decisions, as in cli-utils' `CanApply` / `CanPrune`: whether this
 * inventory may write to a live object, and whether it may delete one. Ownership is the
 * `gitops.dev/owning-inventory` annotation; GitLab's `inventory_policy` values decide adoption.
 */
import type { KubeObject } from './types.js';
import { OWNING_INVENTORY_ANNOTATION, PRUNE_ANNOTATION, pruneDisabled } from './labels.js';

import { INVENTORY_POLICIES, type InventoryPolicy } from '../../protocol/vocabulary.js';

export type { InventoryPolicy };

/**
 * A decision. `allowed` mirrors `ok` for callers written against that name. `adopt` is set when
 * applying takes over an object this inventory did not own yet.
 */
export type Verdict = { ok: true; allowed: true; adopt?: boolean } | { ok: false; allowed: false; reason: string };

const yes = (adopt?: boolean): Verdict => (adopt ? { ok: true, allowed: true, adopt: true } : { ok: true, allowed: true });
const no = (reason: string): Verdict => ({ ok: false, allowed: false, reason });

const POLICIES: ReadonlySet<string> = new Set(INVENTORY_POLICIES);

function ownerOf(live: KubeObject): string | undefined {
  const owner = live.metadata?.annotations?.[OWNING_INVENTORY_ANNOTATION];
  return owner ? owner : undefined;
}

function decideApply(policy: InventoryPolicy, live: KubeObject | undefined, inventoryId: string): Verdict {
  if (!live) return yes();
  const owner = ownerOf(live);
  if (owner === inventoryId) return yes();
  if (owner !== undefined) {
    if (policy === 'adopt_all') return yes(true);
    return no(`owned by inventory ${owner}, not ${inventoryId}: remove it from that inventory's manifests first, or set inventory_policy: adopt_all to take it over`);
  }
  if (policy === 'must_match') return no('exists and is not managed by any inventory (inventory_policy must_match): delete it, or set inventory_policy: adopt_if_no_inventory to adopt it');
  return yes(true);
}

/**
 * May this inventory apply to `live`? Absent objects may always be created; objects we own may
 * always be updated; an unowned object is adopted unless the policy is `must_match`; an object
 * owned by another inventory is taken over only under `adopt_all`.
 * Also accepts the argument order `(live, inventoryId, policy)`.
 */
export function canApply(policy: InventoryPolicy, live: KubeObject | undefined, inventoryId: string): Verdict;
export function canApply(live: KubeObject | undefined, inventoryId: string, policy: InventoryPolicy): Verdict;
export function canApply(a: InventoryPolicy | KubeObject | undefined, b: KubeObject | string | undefined, c: string): Verdict {
  if (typeof a === 'string' && POLICIES.has(a)) return decideApply(a as InventoryPolicy, b as KubeObject | undefined, c);
  return decideApply(c as InventoryPolicy, a as KubeObject | undefined, b as string);
}

/**
 * May this inventory delete `live`? Only objects it owns, and not when they opted out with
 * `gitops.dev/prune: disabled`.
 */
export function canPrune(live: KubeObject, inventoryId: string): Verdict {
  const owner = ownerOf(live);
  if (owner !== inventoryId) return no(owner ? `owned by inventory ${owner}, not ${inventoryId}: not deleted` : 'not owned by this inventory (no owning-inventory annotation): not deleted');
  if (pruneDisabled(live.metadata?.annotations)) return no(`annotated ${PRUNE_ANNOTATION}: disabled: kept`);
  return yes();
}
