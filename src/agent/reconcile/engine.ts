/**
 * The reconcile engine: the orchestrator of one sync, reading top to bottom like the pipeline
 * (parse → resolve → order → validate → apply → prune → inventory → report), plus what the drift
 * controller needs between syncs (object events, plan and apply of one object). It is handed the
 * long-lived I/O state that makes re-syncs cheap (EngineParts: one keep-alive client, discovery,
 * OpenAPI list keys, the watch caches of managed objects and the server-normalised forms already
 * learnt) and keeps what it learns of each unit between syncs.
 *
 * It also follows the health of what each unit's last sync applied and pruned (HealthFollower,
 * ../health/tracker.ts, fed by the same watch caches and by per-namespace pod watches), and
 * orders a sync by `config.kubernetes.io/depends-on` (depends-on.ts): wave by wave, each waiting
 * until the objects it depends on are current.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../../common/logger.js';
import { silentLogger } from '../../common/logger.js';
import { errorMessage, problemOf, type Problem } from '../../common/errors.js';
import { ProblemCode } from '../../protocol/problems.js';
import { gvkOf, objectId, objectKey } from '../../common/object-id.js';
import type { HealthFollower, ObjectEvent, OnePlan, Reconciler } from '../reconciler.js';
import { NotFoundError, type KubeClient } from '../kube/client.js';
import type { Discovery } from '../kube/discovery.js';
import type { OpenApi } from '../kube/openapi.js';
import { PodWatches, type CacheEvent, type PodEvent, type WatchCache } from '../kube/cache.js';
import { INVENTORY_LABEL, OWNING_INVENTORY_ANNOTATION, inventoryLabelValue } from './labels.js';
import { parseManifests } from './parse.js';
import { resolveObjects, type ResolveResult } from './resolve.js';
import { applyStages } from './order.js';
import { desiredHash, planObject } from './plan.js';
import type { ListKeys } from '../kube/schema.js';
import { applyObject, applyStage, type ApplyContext, type ApplyItem } from './apply.js';
import { mapLimit } from '../../common/map-limit.js';
import { identityOf, ignoredPointers } from './ignore.js';
import { pruneObjects, type PruneContext } from './prune.js';
import { diffInventory, entryOf, mergeFailedDeletes, type InventoryEntry } from './inventory.js';
import { readInventory, recordBeforeApply, writeInventory, type InventoryState } from './inventory-store.js';
import { maskChange } from './report.js';
import type { KnownNormal } from './known-normal.js';
import type { Change, ChangeSet, ResolvedObject, SyncUnit } from './types.js';
import type { KubeObject } from '../kube/types.js';
import { HealthTracker, type FollowTarget } from '../health/tracker.js';
import type { HealthReport } from '../health/types.js';
import { DEPENDS_ON_ANNOTATION, dependencyWaves, parseDependsOn } from './depends-on.js';

export type { SyncUnit } from './types.js';

/**
 * The long-lived I/O state an engine works with, built by its owner (commands/engine-parts.ts):
 * the owner keeps the client (shared with leader election and Events in `gitops-agent run`) and
 * closes it after the engine.
 */
export interface EngineParts {
  client: KubeClient;
  discovery: Discovery;
  openapi: OpenApi;
  /** One cache per resource type for every unit, selecting our inventory label. */
  caches: WatchCache;
  known: KnownNormal;
  /** Pod watches per namespace for workload health (the engine makes its own when absent). */
  pods?: PodWatches;
}

export interface EngineOptions {
  logger?: Logger;
  /** Writes in flight within one order stage (default 12). */
  concurrency?: number;
}

export interface SyncOptions {
  signal?: AbortSignal;
  /** Server-side dry run: nothing is written; the change set says what would happen. */
  dryRun?: boolean;
}

/** What the engine remembers of a unit's last sync, for drift. */
interface UnitState {
  unit: SyncUnit;
  inventoryId: string;
  items: Map<string, { item: ApplyItem; listKeys: ListKeys }>;
  inventory?: InventoryState;
}

/** A unit's files after parse, resolve and order. */
interface Prepared {
  digest: string;
  generation: number;
  resolved: ResolveResult;
  stages: ResolvedObject[][];
  items: Map<string, ApplyItem>;
  /** Only when some object has a depends-on annotation: without one a sync has no waits. */
  order?: DependencyOrder;
}

/** A set ordered by depends-on: waves in apply order, what each object waits for, what cannot be ordered. */
interface DependencyOrder {
  waves: ResolvedObject[][];
  /** objectKey → the objectKeys it depends on. */
  deps: Map<string, string[]>;
  /** Objects left out of the waves (object id → its problems). */
  leftOut: Map<string, Problem[]>;
}

// 1,000 creates on 2 cores: 8-16 in flight keep pace with the API server; 24 only doubled the
// tail latency (p90 110 → 260 ms) without finishing sooner, and opens more TLS connections.
const DEFAULT_CONCURRENCY = 12;
const CRD_ESTABLISH_TIMEOUT_MS = 60_000;

/** The reconcile engine; see the module comment. */
export class Engine implements Reconciler, HealthFollower {
  private readonly units = new Map<string, UnitState>();
  private readonly prepared = new Map<string, Prepared>();
  /** objectKey → unit name, for routing watch events. */
  private readonly owners = new Map<string, string>();
  private readonly listeners = new Set<(e: ObjectEvent) => void>();
  private readonly unsubscribe: () => void;
  private readonly unsubscribePods: () => void;
  private readonly tracker: HealthTracker;

  private constructor(
    private readonly client: KubeClient,
    private readonly discovery: Discovery,
    private readonly openapi: OpenApi,
    private readonly caches: WatchCache,
    private readonly known: KnownNormal,
    private readonly pods: PodWatches,
    private readonly log: Logger,
    private readonly concurrency: number,
  ) {
    this.tracker = new HealthTracker({
      live: (t) => this.caches.peek(t.resource)?.get(t.namespace, t.name),
      pods,
    });
    this.unsubscribe = caches.on((e) => this.route(e));
    this.unsubscribePods = pods.on((e) => this.routePod(e));
  }

  static create(parts: EngineParts, options: EngineOptions = {}): Engine {
    const { client, discovery, openapi, caches, known } = parts;
    const log = options.logger ?? silentLogger();
    return new Engine(
      client,
      discovery,
      openapi,
      caches,
      known,
      parts.pods ?? new PodWatches(client, log.child({ component: 'pods' })),
      log,
      options.concurrency ?? DEFAULT_CONCURRENCY,
    );
  }

  /** Applies a unit (or dry-runs it) and returns what happened to every object. */
  async sync(unit: SyncUnit, options: SyncOptions = {}): Promise<ChangeSet> {
    const started = performance.now();
    const dryRun = options.dryRun === true;
    const done = (changes: Change[], errors: Problem[]): ChangeSet => ({
      unit: unit.name,
      ...(unit.commit ? { commit: unit.commit } : {}),
      changes: changes.map(maskChange),
      errors,
      durationMs: Math.round(performance.now() - started),
      dryRun,
    });
    const inventoryId = inventoryIdOf(unit);
    const log = this.log.child({ unit: unit.name, ...(unit.commit ? { commit: unit.commit } : {}) });

    const timings: Record<string, number> = {};
    let mark = started;
    const lap = (stage: string): void => {
      const now = performance.now();
      timings[stage] = Math.round((now - mark) * 10) / 10;
      mark = now;
    };

    // The inventory as it was (step 4) is read while the files are parsed and resolved.
    const state = this.units.get(unit.name);
    const inventoryRead: Promise<InventoryState> =
      state?.inventory && state.inventoryId === inventoryId
        ? Promise.resolve(state.inventory)
        : readInventory(this.client, unit);
    inventoryRead.catch(() => undefined); // awaited below; not an unhandled rejection if prepare fails first

    // 1-3. Parse, resolve and order (the result is reused while the files stay the same).
    const prepared = await this.prepare(unit, inventoryId);
    if ('errors' in prepared) return done([], prepared.errors);
    const { resolved, stages, items, order } = prepared;
    const leftOut = order ? leftOutChanges(resolved.objects, order.leftOut) : [];
    const applicable = order ? order.waves.flat() : resolved.objects;
    this.warmUp(resolved);
    lap('prepare');

    // 4. The inventory as it was, to know what to prune afterwards.
    let inventory: InventoryState;
    try {
      inventory = await inventoryRead;
    } catch (err) {
      return done([], [problemOf(err, ProblemCode.INVENTORY_READ_FAILED)]);
    }

    const ctx = this.applyContext(unit, inventoryId, options.signal, log);
    lap('inventoryRead');

    // 5. Validate the whole set with a server-side dry run when configured: nothing is written
    //    unless every object would be accepted.
    if (unit.config.dryRunStrategy === 'server' || dryRun) {
      const checkable = applicable.filter((o) => !resolved.fromSameSetCrd.has(o.key));
      const checks = await applyStage(
        ctx,
        checkable.map((o) => items.get(o.key)!),
        this.concurrency,
        { dryRun: true },
      );
      const rejected = checks.filter(
        (c, i) => c.action === 'failed' && !inNewNamespace(checkable[i], resolved.objects, c),
      );
      if (dryRun) {
        // Prune as a server-side dry run too, so objects prune would keep (opted out, owned by
        // another inventory) show as skipped rather than pruned.
        const toPrune = unit.config.prune ? inventory.entries.filter((e) => !items.has(e.key)) : [];
        const prunes = toPrune.length
          ? (
              await pruneObjects(
                this.pruneContext(unit, inventoryId, log, options.signal, true),
                toPrune,
                this.concurrency,
              )
            ).changes
          : [];
        return done(
          [
            ...checks.map((c, i) =>
              c.action === 'failed' && !rejected.includes(c)
                ? { id: checkable[i].id, action: 'created' as const, source: checkable[i].source }
                : c,
            ),
            ...leftOut,
            ...prunes,
          ],
          [],
        );
      }
      if (rejected.length) {
        const rejectedIds = new Set(rejected.map((c) => c.id));
        const changes = applicable.map<Change>((o) =>
          rejectedIds.has(o.id)
            ? rejected.find((c) => c.id === o.id)!
            : {
                id: o.id,
                action: 'skipped',
                source: o.source,
                reason: 'not applied: another object in this commit failed validation',
              },
        );
        return done([...leftOut, ...changes], []);
      }
    }

    // 5b. List the objects new to this unit in the inventory before creating any, so an agent
    //     killed mid-apply leaves none that a later commit cannot prune (inventory-store.ts).
    try {
      inventory = await recordBeforeApply(
        this.client,
        unit,
        inventoryId,
        inventory,
        resolved.objects.map((o) => entryOf(items.get(o.key)!.desired)),
      );
      if (state && state.inventoryId === inventoryId) state.inventory = inventory;
    } catch (err) {
      this.units.delete(unit.name);
      return done([], [problemOf(err, ProblemCode.INVENTORY_WRITE_FAILED)]);
    }

    // 6. Apply stage by stage; CRDs must be Established before their custom resources. With
    //    depends-on, wave by wave, each after what it depends on is current.
    const changes: Change[] = [...leftOut];
    const applied: ResolvedObject[] = [];
    const held: FollowTarget[] = [];
    if (order) await this.applyWaves(unit, ctx, order, items, changes, applied, held, options.signal, log);
    else await this.applyInStages(unit, ctx, stages, items, changes, applied, options.signal, log);
    const applyFailed = changes.some((c) => c.action === 'failed');
    lap('apply');

    // 7. Prune what the old inventory has and the new set does not (skipped when an apply
    //    failed: the set may be half-applied, and the next sync prunes).
    const next = resolved.objects.map((o) => entryOf(this.liveOf(o) ?? items.get(o.key)!.desired));
    const { toPrune } = diffInventory(inventory.entries, next);
    let keep: InventoryEntry[] = toPrune;
    let prunedNow: InventoryEntry[] = [];
    if (toPrune.length && unit.config.prune && !applyFailed && !options.signal?.aborted) {
      // Stop routing events for what is about to go, so drift does not recreate it.
      for (const t of toPrune) if (this.owners.get(t.key) === unit.name) this.owners.delete(t.key);
      const pruned = await pruneObjects(
        this.pruneContext(unit, inventoryId, log, options.signal, false),
        toPrune,
        this.concurrency,
      );
      changes.push(...pruned.changes);
      keep = pruned.failed;
      const deleted = new Set(pruned.changes.filter((c) => c.action === 'pruned' && !c.reason).map((c) => c.id));
      prunedNow = toPrune.filter((t) => deleted.has(t.id));
    }

    lap('prune');

    // 7b. Health follows what this sync applied (not what failed or was skipped: the change set
    //     reports those) and what it pruned, until gone. Objects a depends-on wait held back stay
    //     in progress in it until a sync applies them: without them the commit is not healthy.
    this.follow(unit, [...applied.map(targetOf), ...held], prunedNow, log);
    lap('follow');

    // 8. Write the inventory: the new set plus deletes that failed or were not attempted, so
    //    nothing is forgotten. Unchanged inventories are not written.
    let newInventory = inventory;
    try {
      newInventory = await writeInventory(this.client, unit, inventoryId, inventory, mergeFailedDeletes(next, keep));
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'inventory write failed');
      this.units.delete(unit.name);
      return done(changes, [problemOf(err, ProblemCode.INVENTORY_WRITE_FAILED)]);
    }

    lap('inventoryWrite');

    // 9. Remember the desired set for drift, then report.
    this.remember(unit, inventoryId, items, newInventory);
    await this.known.save().catch((err: unknown) => log.debug({ err: errorMessage(err) }, 'state save failed'));
    lap('remember');
    log.debug({ timings, objects: resolved.objects.length }, 'sync stages');
    return done(changes, []);
  }

  /**
   * Parse → resolve → order → decorate. Memoised per unit on the files' digest, the default
   * namespace, the inventory id and the discovery generation: an unchanged re-sync skips parsing
   * (the slowest pure step) and keeps object identities, so plan.ts's per-object caches hit.
   */
  private async prepare(unit: SyncUnit, inventoryId: string): Promise<Prepared | { errors: Problem[] }> {
    const digest = filesDigest(unit, inventoryId);
    const memo = this.prepared.get(unit.name);
    if (memo && memo.digest === digest && memo.generation === this.discovery.generation) return memo;

    // 1. Parse every file; any problem stops the commit before anything is written.
    const parsed = parseManifests(unit.files);
    if (parsed.errors.length) return { errors: parsed.errors };

    // 2. Resolve kinds to resources, default namespaces, find duplicates.
    let resolved: ResolveResult;
    try {
      resolved = await resolveObjects(parsed.objects, this.discovery, unit.config.defaultNamespace);
    } catch (err) {
      return { errors: [problemOf(err, ProblemCode.DISCOVERY_FAILED)] };
    }
    if (resolved.errors.length) return { errors: resolved.errors };

    // 3. Order: Namespaces and CRDs first, then cluster RBAC, then the rest; add our label and
    //    ownership annotation to every desired object.
    const stages = applyStages(resolved.objects);
    const items = new Map<string, ApplyItem>();
    for (const obj of resolved.objects)
      items.set(obj.key, { resolved: obj, desired: decorate(obj.object, inventoryId) });
    const order = resolved.objects.some(hasDependsOn) ? dependencyOrder(resolved.objects) : undefined;
    const result: Prepared = {
      digest,
      generation: this.discovery.generation,
      resolved,
      stages,
      items,
      ...(order ? { order } : {}),
    };
    // Same-set CRDs change discovery during the apply; memoise only what is fully resolvable now.
    if (!resolved.fromSameSetCrd.size) this.prepared.set(unit.name, result);
    return result;
  }

  /**
   * Applies objects stage by stage (order.ts), in parallel within a stage; after a stage with
   * CRDs, waits until their kinds are served. Appends to `changes`, and to `applied` what the API
   * server now has as Git says (created, configured, unchanged).
   */
  private async applyInStages(
    unit: SyncUnit,
    ctx: ApplyContext,
    stages: readonly ResolvedObject[][],
    items: Map<string, ApplyItem>,
    changes: Change[],
    applied: ResolvedObject[],
    signal: AbortSignal | undefined,
    log: Logger,
  ): Promise<void> {
    for (const stage of stages) {
      if (signal?.aborted) break;
      const stageItems = stage.map((o) => items.get(o.key)!);
      const results = await mapLimit(stageItems, this.concurrency, (item) =>
        applyObject(ctx, item, { ignore: ignoredFor(unit, item) }),
      );
      changes.push(...results);
      for (let i = 0; i < stage.length; i++) if (isApplied(results[i])) applied.push(stage[i]);
      const crds = stage.filter((o) => o.object.kind === 'CustomResourceDefinition');
      if (crds.length) await this.afterCrds(crds, log);
    }
  }

  /**
   * Applies a depends-on ordered set wave by wave. Before a wave, waits (bounded by the unit's
   * reconcileTimeoutMs and the signal) until every object it depends on is current; an object
   * whose dependency was not applied, failed or is still not current is skipped
   * (DEPENDENCY_NOT_READY, naming the dependency and its state), and so are, in later waves, the
   * objects depending on it. The rest goes on.
   */
  private async applyWaves(
    unit: SyncUnit,
    ctx: ApplyContext,
    order: DependencyOrder,
    items: Map<string, ApplyItem>,
    changes: Change[],
    applied: ResolvedObject[],
    held: FollowTarget[],
    signal: AbortSignal | undefined,
    log: Logger,
  ): Promise<void> {
    const appliedKeys = new Set<string>();
    const ids = new Map<string, string>();
    for (const wave of order.waves) for (const o of wave) ids.set(o.key, o.id);
    for (const [index, wave] of order.waves.entries()) {
      if (signal?.aborted) break;
      const needed = [...new Set(wave.flatMap((o) => order.deps.get(o.key) ?? []))].filter((k) => appliedKeys.has(k));
      if (index > 0 && needed.length) {
        const bound = unit.config.reconcileTimeoutMs;
        await this.tracker.whenReady(unit.name, needed, bound === undefined ? undefined : Date.now() + bound, signal);
        if (signal?.aborted) break;
      }
      const ready: ResolvedObject[] = [];
      for (const o of wave) {
        const blocker = this.blockerOf(unit, o, order, appliedKeys, ids);
        if (blocker) {
          const change = notReady(o, blocker);
          changes.push(change);
          held.push({ ...targetOf(o), held: change.reason! });
        } else ready.push(o);
      }
      const before = applied.length;
      await this.applyInStages(unit, ctx, applyStages(ready), items, changes, applied, signal, log);
      const now = applied.slice(before);
      for (const o of now) appliedKeys.add(o.key);
      // Followed from now on, so the next wave's wait sees them turn current.
      this.tracker.extend(unit.name, unit.commit, now.map(targetOf));
    }
  }

  /** Why an object cannot be applied yet: its first dependency that is not applied or not current. */
  private blockerOf(
    unit: SyncUnit,
    o: ResolvedObject,
    order: DependencyOrder,
    appliedKeys: ReadonlySet<string>,
    ids: ReadonlyMap<string, string>,
  ): string | undefined {
    for (const dep of order.deps.get(o.key) ?? []) {
      const id = ids.get(dep) ?? dep;
      if (!appliedKeys.has(dep)) return `depends on ${id}, which was not applied`;
      const health = this.tracker.stateOf(unit.name, dep);
      if (health?.state !== 'current')
        return `depends on ${id}, which is ${health?.state ?? 'unknown'}${health ? ` (${health.reason}: ${health.message})` : ''}`;
    }
    return undefined;
  }

  /**
   * Makes what a sync applied and pruned the unit's followed set (with the objects a depends-on
   * wait held back: the commit is not healthy without them). Pruned objects the cache no
   * longer holds are read once (not polled): only that read or the watch's DELETED event can tell
   * one a finalizer still holds from one that is gone.
   */
  private follow(
    unit: SyncUnit,
    applied: readonly FollowTarget[],
    pruned: readonly InventoryEntry[],
    log: Logger,
  ): void {
    const prunedTargets: FollowTarget[] = [];
    for (const t of pruned) {
      const resource = this.discovery.peek(t.group, t.version, t.kind) ?? this.discovery.preferred(t.group, t.kind);
      if (resource)
        prunedTargets.push({ key: t.key, id: t.id, resource, namespace: t.namespace, name: t.name, pruned: true });
    }
    this.tracker.follow(unit.name, unit.commit, [...applied, ...prunedTargets]);
    const unseen = prunedTargets.filter((t) => !this.caches.peek(t.resource)?.get(t.namespace, t.name));
    if (!unseen.length) return;
    void mapLimit(unseen, this.concurrency, async (t) => {
      try {
        await this.client.get(t.resource, t.namespace, t.name);
        this.tracker.probed(unit.name, t.key, true);
      } catch (err) {
        if (err instanceof NotFoundError) this.tracker.probed(unit.name, t.key, false);
        else log.debug({ object: t.id, err: errorMessage(err) }, 'pruned object read failed; its watch event decides');
      }
    }).catch((err: unknown) => log.debug({ err: errorMessage(err) }, 'pruned object reads failed'));
  }

  /** HealthFollower: waits until the unit's last sync is healthy, degraded or timed out (tracker.ts). */
  waitHealth(
    unit: string,
    options: { timeoutMs: number; pruneTimeoutMs: number; signal?: AbortSignal },
  ): Promise<HealthReport> {
    return this.tracker.waitHealth(unit, options);
  }

  /** HealthFollower: the unit's health now (undefined before its first sync). */
  health(unit: string): HealthReport | undefined {
    return this.tracker.health(unit);
  }

  /** HealthFollower: once per change of a unit's result or of an object's state or reason. */
  onHealthChange(listener: (report: HealthReport) => void): () => void {
    return this.tracker.onHealthChange(listener);
  }

  /** HealthFollower: stops following a removed unit (tracker.ts releases its pod watches). */
  forget(unit: string): void {
    this.tracker.forget(unit);
  }

  /** The cached live object of a followed object by its id (for a Kubernetes Event on it; no request). */
  liveObject(unit: string, id: string): KubeObject | undefined {
    return this.tracker.liveObject(unit, id);
  }

  /** What a sync would change, without writing anything (server-side dry runs only). */
  async diff(unit: SyncUnit): Promise<{ changes: Change[]; errors: Problem[] }> {
    const set = await this.sync(unit, { dryRun: true });
    return { changes: set.changes, errors: set.errors };
  }

  /** Hears about changes to managed objects that did not come from our own writes. */
  onObjectEvent(listener: (e: ObjectEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Plans one managed object against the cache (no request). Undefined when unknown. */
  planOne(unitName: string, key: string, options: { ignore?: string[] } = {}): OnePlan | undefined {
    const state = this.units.get(unitName);
    const entry = state?.items.get(key);
    if (!entry) return undefined;
    const { item, listKeys } = entry;
    const cache = this.caches.peek(item.resolved.resource);
    const live = cache?.get(item.desired.metadata.namespace, item.desired.metadata.name);
    const plan = planObject({
      desired: item.desired,
      live,
      listKeys,
      ignore: options.ignore,
      normalized: this.known.get(desiredHash(item.desired)),
    });
    return { action: plan.action, patch: plan.patch };
  }

  /** Brings one managed object back to its desired state (revert drift, recreate if deleted). */
  async applyOne(unitName: string, key: string, options: { ignore?: string[] } = {}): Promise<Change> {
    const state = this.units.get(unitName);
    const entry = state?.items.get(key);
    if (!state || !entry) return { id: key, action: 'skipped', reason: 'not managed by this unit' };
    const ctx = this.applyContext(state.unit, state.inventoryId, undefined, this.log.child({ unit: unitName }));
    return maskChange(await applyObject(ctx, entry.item, { ignore: options.ignore }));
  }

  /** Stops the watches; the client is its owner's to close. */
  close(): void {
    this.prepared.clear();
    this.tracker.close();
    this.unsubscribe();
    this.unsubscribePods();
    this.pods.close();
    this.caches.close();
  }

  private applyContext(
    unit: SyncUnit,
    inventoryId: string,
    signal: AbortSignal | undefined,
    log: Logger,
  ): ApplyContext {
    return {
      client: this.client,
      caches: this.caches,
      openapi: this.openapi,
      known: this.known,
      inventoryId,
      inventoryPolicy: unit.config.inventoryPolicy,
      log,
      signal,
    };
  }

  private pruneContext(
    unit: SyncUnit,
    inventoryId: string,
    log: Logger,
    signal: AbortSignal | undefined,
    dryRun: boolean,
  ): PruneContext {
    return {
      client: this.client,
      discovery: this.discovery,
      caches: this.caches,
      inventoryId,
      log,
      propagationPolicy: unit.config.prunePropagationPolicy,
      dryRun,
      signal,
    };
  }

  /**
   * Starts, without waiting, the watch cache (first LIST, then WATCH) and the OpenAPI list keys of
   * every resource type in the set, all in parallel: otherwise the first object of each type waits
   * for them in turn, in the middle of the apply. Failures are left to the apply, which asks again.
   */
  private warmUp(resolved: ResolveResult): void {
    const seen = new Set<string>();
    for (const o of resolved.objects) {
      if (resolved.fromSameSetCrd.has(o.key)) continue; // not served until its CRD is applied
      const type = `${o.object.apiVersion}/${o.object.kind}`;
      if (seen.has(type)) continue;
      seen.add(type);
      this.caches.for(o.resource).catch(() => undefined);
      this.openapi.listKeysFor(gvkOf(o.object)).catch(() => undefined);
    }
  }

  /** The cached live object of a resolved object (after apply: the write response). */
  private liveOf(o: ResolvedObject): KubeObject | undefined {
    return this.caches.peek(o.resource)?.get(o.object.metadata.namespace, o.object.metadata.name);
  }

  private remember(
    unit: SyncUnit,
    inventoryId: string,
    items: Map<string, ApplyItem>,
    inventory: InventoryState,
  ): void {
    const previous = this.units.get(unit.name);
    if (previous)
      for (const key of previous.items.keys()) if (this.owners.get(key) === unit.name) this.owners.delete(key);
    const remembered = new Map<string, { item: ApplyItem; listKeys: ListKeys }>();
    for (const [key, item] of items) {
      const listKeys = this.openapi.peekListKeys(item.resolved) ?? new Map<string, readonly string[]>();
      remembered.set(key, { item, listKeys });
      this.owners.set(key, unit.name);
    }
    this.units.set(unit.name, { unit, inventoryId, items: remembered, inventory });
  }

  /**
   * Waits for CRDs to be Established, then re-reads discovery until it serves every version they
   * define (the aggregated discovery document is updated a moment after Established turns True, so
   * one refresh can still miss the new kind and fail the custom resources that follow), then
   * drops the OpenAPI cache. Bounded by CRD_ESTABLISH_TIMEOUT_MS; on timeout the dependents fail
   * with "kind not served" and the next sync retries.
   */
  private async afterCrds(crds: ResolvedObject[], log: Logger): Promise<void> {
    const deadline = Date.now() + CRD_ESTABLISH_TIMEOUT_MS;
    const pause = (): Promise<void> => new Promise((r) => setTimeout(r, 50));
    await Promise.all(
      crds.map(async (crd) => {
        for (;;) {
          let live: KubeObject | undefined;
          try {
            live = await this.client.get(crd.resource, undefined, crd.object.metadata.name);
          } catch (err) {
            if (!(err instanceof NotFoundError)) throw err;
          }
          const conditions =
            (live?.status as { conditions?: Array<{ type: string; status: string }> } | undefined)?.conditions ?? [];
          if (conditions.some((c) => c.type === 'Established' && c.status === 'True')) return;
          if (Date.now() > deadline) {
            log.warn({ object: crd.id }, 'CRD not established in time');
            return;
          }
          await pause();
        }
      }),
    );
    const wanted = crds.flatMap((crd) => servedKindsOf(crd.object));
    for (;;) {
      await this.discovery.refresh();
      const missing = wanted.filter((w) => !this.discovery.peek(w.group, w.version, w.kind));
      if (!missing.length) break;
      if (Date.now() > deadline) {
        log.warn(
          { missing: missing.map((m) => `${m.group}/${m.version} ${m.kind}`) },
          'CRD kinds not discoverable in time',
        );
        break;
      }
      await pause();
    }
    this.openapi.invalidate();
  }

  /** A pod event: the workloads it belongs to are re-evaluated (after a list, all of the namespace's). */
  private routePod(e: PodEvent): void {
    if (e.type === 'synced') this.tracker.podEvent(e.namespace);
    else this.tracker.podEvent(e.namespace, { type: e.type, pod: e.pod });
  }

  /** Routes a cache event to the health tracker and to the unit that manages the object. */
  private route(e: CacheEvent): void {
    const o = e.object;
    const key = objectKey({
      apiVersion: o.apiVersion,
      kind: o.kind,
      namespace: o.metadata.namespace,
      name: o.metadata.name,
    });
    this.tracker.objectEvent(key, e.type);
    if (!this.listeners.size) return;
    const unit = this.owners.get(key);
    if (!unit) return;
    const event: ObjectEvent = {
      unit,
      key,
      id: objectId({ kind: o.kind, namespace: o.metadata.namespace, name: o.metadata.name }),
      type: e.type,
      live: o,
    };
    for (const cb of this.listeners) {
      try {
        cb(event);
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'object event listener failed');
      }
    }
  }
}

/** The inventory id of a unit: namespace and name of its inventory ConfigMap. */
export function inventoryIdOf(unit: SyncUnit): string {
  return `${unit.namespace}/${unit.name}`;
}

/** Created, configured or unchanged: the API server has the object as Git says. */
function isApplied(c: Change): boolean {
  return c.action === 'created' || c.action === 'configured' || c.action === 'unchanged';
}

function targetOf(o: ResolvedObject): FollowTarget {
  return {
    key: o.key,
    id: o.id,
    resource: o.resource,
    ...(o.object.metadata.namespace ? { namespace: o.object.metadata.namespace } : {}),
    name: o.object.metadata.name,
  };
}

function hasDependsOn(o: ResolvedObject): boolean {
  return o.object.metadata.annotations?.[DEPENDS_ON_ANNOTATION] !== undefined;
}

/**
 * Waves and per-object dependencies of a set (depends-on.ts orders, this keeps which objectKeys
 * each object waits for: a reference `group/namespaces/ns/Kind/name` is the objectKey
 * `group/Kind/ns/name`).
 */
function dependencyOrder(objects: readonly ResolvedObject[]): DependencyOrder {
  const { waves, problems } = dependencyWaves(objects);
  const deps = new Map<string, string[]>();
  for (const o of objects) {
    const value = o.object.metadata.annotations?.[DEPENDS_ON_ANNOTATION];
    if (value === undefined) continue;
    const parsed = parseDependsOn(value);
    if ('refs' in parsed)
      deps.set(
        o.key,
        parsed.refs.map((r) => `${r.group}/${r.kind}/${r.namespace ?? ''}/${r.name}`),
      );
  }
  const leftOut = new Map<string, Problem[]>();
  for (const p of problems) {
    const id = p.object ?? '';
    leftOut.set(id, [...(leftOut.get(id) ?? []), p]);
  }
  return { waves, deps, leftOut };
}

/**
 * Changes for the objects depends-on left out: `failed` with their DEPENDS_ON_* problems (the
 * annotation is wrong), `skipped` when only a dependency of theirs is (DEPENDENCY_NOT_READY).
 */
function leftOutChanges(objects: readonly ResolvedObject[], leftOut: ReadonlyMap<string, Problem[]>): Change[] {
  const changes: Change[] = [];
  for (const o of objects) {
    const problems = leftOut.get(o.id);
    if (!problems?.length) continue;
    const own = problems.find((p) => p.code !== ProblemCode.DEPENDENCY_NOT_READY);
    changes.push({
      id: o.id,
      action: own ? 'failed' : 'skipped',
      source: o.source,
      reason: problems.map((p) => p.message).join('; '),
      error: own ?? problems[0],
    });
  }
  return changes;
}

/** An object held back because a dependency is not current. */
function notReady(o: ResolvedObject, why: string): Change {
  const message = `${o.id}: not applied: ${why}`;
  return {
    id: o.id,
    action: 'skipped',
    source: o.source,
    reason: message,
    error: { code: ProblemCode.DEPENDENCY_NOT_READY, message, object: o.id },
  };
}

/** drift.ignore pointers for one object: a re-sync leaves those fields alone on existing objects. */
function ignoredFor(unit: SyncUnit, item: ApplyItem): string[] | undefined {
  if (!unit.driftIgnore?.length) return undefined;
  const pointers = ignoredPointers(unit.driftIgnore, identityOf(item.desired));
  return pointers.length ? pointers : undefined;
}

/** Identity of a unit's input: files, default namespace and inventory id. */
function filesDigest(unit: SyncUnit, inventoryId: string): string {
  const h = createHash('sha256').update(`${inventoryId}\0${unit.config.defaultNamespace}\0`);
  for (const f of unit.files) h.update(`${f.path}\0${f.content.length}\0`).update(f.content);
  return h.digest('hex');
}

/** Desired object plus our label and ownership annotation. */
function decorate(obj: KubeObject, inventoryId: string): KubeObject {
  return {
    ...obj,
    metadata: {
      ...obj.metadata,
      labels: { ...(obj.metadata.labels ?? {}), [INVENTORY_LABEL]: inventoryLabelValue(inventoryId) },
      annotations: { ...(obj.metadata.annotations ?? {}), [OWNING_INVENTORY_ANNOTATION]: inventoryId },
    },
  };
}

/** A dry-run create in a Namespace that this same set creates fails with NotFound: not a real failure. */
function inNewNamespace(obj: ResolvedObject, all: ResolvedObject[], change: Change): boolean {
  const ns = obj.object.metadata.namespace;
  if (!ns || change.error?.code !== ProblemCode.KUBE_NOT_FOUND) return false;
  return all.some((o) => o.object.kind === 'Namespace' && o.object.metadata.name === ns);
}

/** Every group/version/kind a CustomResourceDefinition serves (what discovery must show before its resources apply). */
function servedKindsOf(crd: KubeObject): Array<{ group: string; version: string; kind: string }> {
  const spec = crd.spec as
    { group?: string; names?: { kind?: string }; versions?: Array<{ name?: string; served?: boolean }> } | undefined;
  const group = spec?.group;
  const kind = spec?.names?.kind;
  if (!group || !kind) return [];
  return (spec?.versions ?? [])
    .filter((v) => v.served !== false && typeof v.name === 'string')
    .map((v) => ({ group, version: v.name!, kind }));
}
