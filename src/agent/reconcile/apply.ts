/**
 * Apply stage: the I/O half of reconciling one object. Live state comes from the watch cache;
 * plan.ts decides; this module sends at most what the plan says: nothing for `none`, a create, or
 * a JSON patch guarded by a `test` on `metadata.resourceVersion`, re-reading and re-planning on a
 * conflict (bounded). Write responses go straight into the cache. Immutable-field errors fail the
 * object unless it opted in to delete-and-recreate. The server-normalised form of a desired object
 * is learnt from create responses or, once per desired hash, from a server-side dry run.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from '../../common/logger.js';
import { problemOf } from '../../common/errors.js';
import { ProblemCode } from '../../protocol/problems.js';
import {
  AlreadyExistsError,
  ConflictError,
  InvalidError,
  KubeApiError,
  NotFoundError,
  type KubeClient,
} from '../kube/client.js';
import type { ResourceCache, WatchCache } from '../kube/cache.js';
import type { OpenApi } from '../kube/openapi.js';
import { gvkOf } from '../../common/object-id.js';
import type { Change, ResolvedObject } from './types.js';
import type { JsonPatchOp, KubeObject } from '../kube/types.js';
import { desiredHash, planObject, projectFields } from './plan.js';
import { canApply } from './policy.js';
import type { InventoryPolicy } from '../../protocol/vocabulary.js';
import { APPLIED_FIELDS_ANNOTATION, recreateOnImmutableChange } from './labels.js';
import type { KnownNormal } from './known-normal.js';
import { mapLimit } from '../../common/map-limit.js';

/** Conflict retries per object before giving up (each one re-reads and re-plans). */
export const MAX_CONFLICT_RETRIES = 5;
/** How long a delete-and-recreate waits for the old object to go. */
const RECREATE_WAIT_MS = 30_000;

/** The requests apply makes (kube/client.ts's KubeClient). */
export type ApplyClient = Pick<KubeClient, 'create' | 'jsonPatch' | 'get' | 'delete'>;

/** Everything the apply stage needs, built once by the engine: small slices of its parts. */
export interface ApplyContext {
  client: ApplyClient;
  caches: Pick<WatchCache, 'for'>;
  openapi: Pick<OpenApi, 'listKeysFor'>;
  known: Pick<KnownNormal, 'get' | 'set'>;
  inventoryId: string;
  inventoryPolicy: InventoryPolicy;
  log: Logger;
  signal?: AbortSignal;
}

/** One object to apply: resolved, and `desired` already carrying our label and annotations. */
export interface ApplyItem {
  resolved: ResolvedObject;
  desired: KubeObject;
}

export interface ApplyOptions {
  /** Server-side dry run only: nothing is written, actions say what would happen. */
  dryRun?: boolean;
  /** JSON pointers never reconciled on an existing object (drift.ignore). */
  ignore?: readonly string[];
}

function failed(item: ApplyItem, err: unknown): Change {
  const { id, source } = item.resolved;
  const error = { ...problemOf(err, ProblemCode.APPLY_FAILED, id), file: source.file, line: source.line };
  return { id: item.resolved.id, action: 'failed', source: item.resolved.source, reason: error.message, error };
}

/**
 * Applies one object (or dry-runs it). Never throws: every outcome is a Change.
 */
export async function applyObject(ctx: ApplyContext, item: ApplyItem, options: ApplyOptions = {}): Promise<Change> {
  try {
    return await applyObjectOrThrow(ctx, item, options);
  } catch (err) {
    return failed(item, err);
  }
}

async function applyObjectOrThrow(ctx: ApplyContext, item: ApplyItem, options: ApplyOptions): Promise<Change> {
  const { resolved, desired } = item;
  const { id, source, resource } = resolved;
  const ns = desired.metadata.namespace;
  const name = desired.metadata.name;
  const listKeys = await ctx.openapi.listKeysFor(gvkOf(resolved.object));
  // Live state from the watch cache (undefined when absent or not yet labelled by us).
  const cache = await ctx.caches.for(resource);
  const hash = desiredHash(desired);
  const dryRun = options.dryRun === true;
  let live = cache.get(ns, name);

  for (let attempt = 0; ; attempt++) {
    if (live) {
      const verdict = canApply(live, ctx.inventoryId, ctx.inventoryPolicy);
      if (!verdict.allowed) return { id, action: 'skipped', source, reason: verdict.reason };
    }
    const normalized = ctx.known.get(hash);
    const plan = planObject({ desired, live, listKeys, ignore: options.ignore, normalized });
    if (plan.action === 'none') return { id, action: 'unchanged', source };

    try {
      if (plan.action === 'create') {
        const body = plan.body!; // plan.ts sets it for every 'create'
        const created = dryRun
          ? await ctx.client.create(resource, body, { dryRun, signal: ctx.signal })
          : await tracked(cache, ns, name, () => ctx.client.create(resource, body, { signal: ctx.signal }));
        if (!dryRun) ctx.known.set(hash, projectFields(created, desired, listKeys));
        return { id, action: 'created', source };
      }

      // Patch. The first time this desired state meets a live object that plan.ts thinks differs,
      // ask the server what the patch would produce: when that equals live, it was normalisation.
      if (!live) throw new Error('unreachable: patch without live object');
      // plan.ts starts the patch with a `test` of resourceVersion: a concurrent change fails it.
      const ops = plan.patch;
      const shown = ops.filter((o) => o.op !== 'test');
      if (dryRun || (!normalized && mayBeNormalisation(plan.patch, live, plan.appliedFields))) {
        const preview = await ctx.client.jsonPatch(resource, ns, name, ops, { dryRun: true, signal: ctx.signal });
        if (!dryRun) ctx.known.set(hash, projectFields(preview, desired, listKeys));
        // Nothing but bookkeeping would change (the field set is already recorded): normalisation
        // plan.ts did not know. Removals and real changes show up in this whole-object compare.
        if (
          live.metadata.annotations?.[APPLIED_FIELDS_ANNOTATION] === plan.appliedFields &&
          isDeepStrictEqual(withoutBookkeeping(preview), withoutBookkeeping(live))
        ) {
          return { id, action: 'unchanged', source };
        }
        if (dryRun)
          return { id, action: 'configured', source, patch: shown, ...(plan.reason ? { reason: plan.reason } : {}) };
      }
      const patched = await tracked(cache, ns, name, () =>
        ctx.client.jsonPatch(resource, ns, name, ops, { signal: ctx.signal }),
      );
      if (!normalized) ctx.known.set(hash, projectFields(patched, desired, listKeys));
      return { id, action: 'configured', source, patch: shown, ...(plan.reason ? { reason: plan.reason } : {}) };
    } catch (err) {
      if (attempt >= MAX_CONFLICT_RETRIES) throw err;
      if (err instanceof AlreadyExistsError) {
        // Not labelled by us yet (so not in the cache): read it once and plan against it.
        live = await ctx.client.get(resource, ns, name, ctx.signal);
        continue;
      }
      if (err instanceof ConflictError || (err instanceof InvalidError && err.isTestFailure)) {
        ctx.log.debug({ object: id, attempt }, 'conflict, re-reading');
        const testedRv = live?.metadata.resourceVersion;
        live = await readLive(ctx, item);
        // Same resourceVersion as tested: the 422 was not our lock but the patch itself.
        if (err instanceof InvalidError && live && live.metadata.resourceVersion === testedRv) throw err;
        if (live) cache.upsert(live);
        continue;
      }
      if (err instanceof NotFoundError && live) {
        // Deleted between plan and patch: create it instead.
        live = undefined;
        continue;
      }
      if (
        err instanceof InvalidError &&
        err.isImmutable &&
        !dryRun &&
        live &&
        recreateOnImmutableChange(desired.metadata.annotations)
      ) {
        await deleteAndWait(ctx, item, live);
        cache.remove(ns, name);
        live = undefined;
        continue;
      }
      throw err;
    }
  }
}

/** Runs a write with the cache told, so the watch echo of our own write is not taken for drift. */
async function tracked(
  cache: ResourceCache,
  ns: string | undefined,
  name: string,
  write: () => Promise<KubeObject>,
): Promise<KubeObject> {
  cache.beginWrite(ns, name);
  let response: KubeObject | undefined;
  try {
    response = await write();
    return response;
  } finally {
    cache.endWrite(ns, name, response);
  }
}

async function readLive(ctx: ApplyContext, item: ApplyItem): Promise<KubeObject | undefined> {
  try {
    return await ctx.client.get(
      item.resolved.resource,
      item.desired.metadata.namespace,
      item.desired.metadata.name,
      ctx.signal,
    );
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

async function deleteAndWait(ctx: ApplyContext, item: ApplyItem, live: KubeObject): Promise<void> {
  const { resource } = item.resolved;
  const { namespace, name } = item.desired.metadata;
  ctx.log.info({ object: item.resolved.id }, 'immutable field changed, recreating');
  try {
    await ctx.client.delete(resource, namespace, name, {
      uid: live.metadata.uid,
      propagationPolicy: 'Background',
      signal: ctx.signal,
    });
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
  const deadline = Date.now() + RECREATE_WAIT_MS;
  while (Date.now() < deadline) {
    if ((await readLive(ctx, item)) === undefined) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new KubeApiError('retryable', ProblemCode.RECREATE_TIMEOUT, item.resolved.id, 0, {
    message: `still terminating after ${RECREATE_WAIT_MS / 1000} s; will retry`,
  });
}

/**
 * Could this patch be nothing but a normalisation plan.ts does not know? Only when the field set
 * is the one already recorded and every op replaces a scalar with a scalar: added or removed
 * fields are real changes, and then a dry run would only cost a request.
 */
function mayBeNormalisation(ops: readonly JsonPatchOp[], live: KubeObject, appliedFields: string): boolean {
  if (live.metadata.annotations?.[APPLIED_FIELDS_ANNOTATION] !== appliedFields) return false;
  return ops.every((o) => o.op === 'test' || (o.op === 'replace' && (o.value === null || typeof o.value !== 'object')));
}

/** An object without what every write changes (managedFields times, resourceVersion, generation). */
function withoutBookkeeping(obj: KubeObject): KubeObject {
  const { managedFields: _m, resourceVersion: _r, generation: _g, ...metadata } = obj.metadata;
  return { ...obj, metadata: metadata as KubeObject['metadata'] };
}

/** Applies one order stage with bounded concurrency. */
export function applyStage(
  ctx: ApplyContext,
  items: ApplyItem[],
  concurrency: number,
  options: ApplyOptions = {},
): Promise<Change[]> {
  return mapLimit(items, concurrency, (item) => applyObject(ctx, item, options));
}
