/**
 * Prune stage: deletes what the last inventory had and the new set does not, in reverse apply
 * order. Only objects this inventory owns (policy.ts `canPrune`) and that did not opt out are
 * deleted, each with a UID precondition (never a newer object of the same name) and the configured
 * propagation policy. NotFound counts as done; a failed delete is reported and stays in the
 * inventory so the next sync tries again.
 */
import type { Logger } from '../../common/logger.js';
import { problemOf } from '../../common/errors.js';
import { ProblemCode } from '../../protocol/problems.js';
import type { PropagationPolicy } from '../../protocol/vocabulary.js';
import { objectId } from '../../common/object-id.js';
import { NotFoundError, KubeApiError, type KubeClient } from '../kube/client.js';
import type { Discovery } from '../kube/discovery.js';
import type { WatchCache } from '../kube/cache.js';
import type { Change } from './types.js';
import type { KubeObject, ResourceInfo } from '../kube/types.js';
import { canPrune } from './policy.js';
import { mapLimit } from '../../common/map-limit.js';
import { pruneOrder } from './order.js';
import type { InventoryEntry } from './inventory.js';

/** An object the old inventory has and the new set does not. */
export type PruneTarget = InventoryEntry;

export interface PruneContext {
  client: Pick<KubeClient, 'get' | 'delete'>;
  discovery: Pick<Discovery, 'ensureLoaded' | 'peek' | 'preferred'>;
  caches: Pick<WatchCache, 'peek' | 'for'>;
  inventoryId: string;
  log: Logger;
  propagationPolicy: PropagationPolicy;
  dryRun?: boolean;
  signal?: AbortSignal;
}

export interface PruneResult {
  changes: Change[];
  /** Entries whose delete failed: they stay in the inventory. */
  failed: InventoryEntry[];
}

const POLICY: Record<PruneContext['propagationPolicy'], 'Foreground' | 'Background' | 'Orphan'> = {
  foreground: 'Foreground',
  background: 'Background',
  orphan: 'Orphan',
};

/**
 * Which resource serves a target: the version the inventory recorded when it is still served (the
 * object was written there, and a kind may be served under different resources per version),
 * else the server's preferred version of the group/kind.
 */
async function resourceOf(ctx: PruneContext, t: PruneTarget): Promise<ResourceInfo | undefined> {
  await ctx.discovery.ensureLoaded();
  return (
    (t.version ? ctx.discovery.peek(t.group, t.version, t.kind) : undefined) ?? ctx.discovery.preferred(t.group, t.kind)
  );
}

/** Deletes the targets (reverse order, bounded concurrency within a rank). */
export async function pruneObjects(
  ctx: PruneContext,
  targets: PruneTarget[],
  concurrency: number,
): Promise<PruneResult> {
  const changes: Change[] = [];
  const failed: InventoryEntry[] = [];
  for (const batch of pruneOrder(targets)) {
    const results = await mapLimit(batch, concurrency, (t) => pruneOne(ctx, t));
    for (let i = 0; i < batch.length; i++) {
      changes.push(results[i]);
      if (results[i].action === 'failed') failed.push(batch[i]);
    }
  }
  return { changes, failed };
}

async function pruneOne(ctx: PruneContext, t: PruneTarget): Promise<Change> {
  const id = objectId(t);
  try {
    const resource = await resourceOf(ctx, t);
    // The kind is no longer served (its CRD went first): nothing left to delete.
    if (!resource) return { id, action: 'pruned', reason: 'kind no longer served' };
    const cache = ctx.caches.peek(resource) ?? (await ctx.caches.for(resource));
    let live: KubeObject | undefined = cache.get(t.namespace, t.name);
    if (!live) {
      try {
        live = await ctx.client.get(resource, t.namespace, t.name, ctx.signal);
      } catch (err) {
        if (err instanceof NotFoundError) return { id, action: 'pruned', reason: 'already gone' };
        throw err;
      }
    }
    const verdict = canPrune(live, ctx.inventoryId);
    if (!verdict.allowed) return { id, action: 'skipped', reason: verdict.reason };
    try {
      await ctx.client.delete(resource, t.namespace, t.name, {
        uid: live.metadata.uid ?? t.uid,
        propagationPolicy: POLICY[ctx.propagationPolicy],
        dryRun: ctx.dryRun,
        signal: ctx.signal,
      });
    } catch (err) {
      if (err instanceof NotFoundError) return { id, action: 'pruned', reason: 'already gone' };
      // UID precondition failed: a different object now has this name, and it is not ours to delete.
      if (err instanceof KubeApiError && err.status === 409)
        return { id, action: 'skipped', reason: 'replaced by a different object of the same name' };
      throw err;
    }
    if (!ctx.dryRun) cache.remove(t.namespace, t.name);
    return { id, action: 'pruned' };
  } catch (err) {
    const error = problemOf(err, ProblemCode.PRUNE_FAILED, id);
    ctx.log.warn({ object: id, err: error.message }, 'prune failed');
    return { id, action: 'failed', reason: error.message, error };
  }
}
