/**
 * Health of what each unit applied, followed from the engine's watch caches: no polling. The
 * engine tells the tracker which objects a sync applied and pruned (`follow`), and hands it every
 * cache event (`objectEvent`) and every pod event of a namespace it asked pods for (`podEvent`);
 * the tracker recomputes only the objects an event concerns with status.ts's `healthOf`, keeps a
 * count per unit of what is failed and what is not done yet, and tells listeners once per change
 * of a unit's result or of an object's state or reason (a digest of the report, compared after
 * each burst of events), not once per event.
 *
 * The tracker holds no objects: it reads them from the caches through `TrackerSources.live`
 * (the one copy the agent keeps) and pods through `TrackerSources.pods`, whose watches it starts
 * per namespace while a workload there is followed and stops when none is.
 */
import { createHash } from 'node:crypto';
import type { HealthResult, HealthState } from '../../protocol/vocabulary.js';
import type { KubeObject, ResourceInfo } from '../kube/types.js';
import type { HealthReport, ObjectHealth, ObjectHealthEntry } from './types.js';
import { healthOf, podsMatter, recheckAt } from './status.js';

/** One object to follow: applied (followed until current) or pruned (followed until gone). */
export interface FollowTarget {
  /** objectKey (`group/Kind/namespace/name`). */
  key: string;
  /** objectId (`Kind/namespace/name`), as in the change set. */
  id: string;
  resource: ResourceInfo;
  namespace?: string;
  name: string;
  pruned?: boolean;
  /**
   * Why the sync did not apply it (a depends-on dependency not current in time): it stays in
   * progress until a later sync applies it, so the commit is not healthy without it.
   */
  held?: string;
}

/** Pods of a namespace, watched while some followed workload lives there. */
export interface PodSource {
  acquire(namespace: string): void;
  release(namespace: string): void;
  /** The namespace's pods now (slim: only what healthOf reads); empty before the first list. */
  pods(namespace: string): readonly KubeObject[];
}

export interface TrackerSources {
  /** The cached live object of a target (undefined when the cache has none). */
  live(target: FollowTarget): KubeObject | undefined;
  pods: PodSource;
  now?: () => number;
  /** Runs `fn` after `ms`; returns a cancel function (the engine's timers are unref'd). */
  timer?: (fn: () => void, ms: number) => () => void;
  /** Runs `fn` once the current burst of events is over (default setImmediate). */
  defer?: (fn: () => void) => void;
}

interface Followed {
  target: FollowTarget;
  health: ObjectHealth;
  /** Failed, not done yet, or done (current; for a pruned object: gone). */
  rank: 0 | 1 | 2;
  /** Pruned only: whether it is known to be gone (undefined until an event or the probe says). */
  gone?: boolean;
  /** Pruned only: an event arrived since following started (a probe's answer is older then). */
  heard?: boolean;
  /** The namespace and selector of its pods, when they matter (a pod watch is held for it). */
  podScope?: { namespace: string; selector: Record<string, string> };
  cancelRecheck?: () => void;
  /**
   * resourceVersion of the cached object health was last computed from: a re-sync recomputes
   * only objects the cache holds a newer version of without having told us (our own writes; the
   * watch's echo of a write has the write's resourceVersion and is no change).
   */
  liveRv?: string;
}

/** The pods of one watched namespace, indexed by label pair, so a workload finds its own without a scan. */
interface PodIndex {
  byName: Map<string, KubeObject>;
  /** `key\0value` → pods with that label. */
  byPair: Map<string, Set<KubeObject>>;
}

interface Waiter {
  resolve(report: HealthReport): void;
  cleanup(): void;
}

interface UnitHealth {
  unit: string;
  commit?: string;
  objects: Map<string, Followed>;
  failed: number;
  /** Not done, applied and pruned counted apart (they have their own deadlines). */
  pendingApplied: number;
  pendingPruned: number;
  startedAt: number;
  deadline?: number;
  pruneDeadline?: number;
  /** The wait was told not to wait for pruned objects (pruneTimeoutMs 0). */
  ignorePruned?: boolean;
  result: HealthResult;
  settledAt?: number;
  digest?: string;
  /** Something changed since the last flush. */
  dirty: boolean;
  /** A flush is deferred to the end of the current burst of events. */
  flushQueued?: boolean;
  waiters: Set<Waiter>;
  cancelDeadlines: Array<() => void>;
}

const defaultTimer = (fn: () => void, ms: number): (() => void) => {
  const t = setTimeout(fn, ms);
  t.unref();
  return () => clearTimeout(t);
};

/** Follows the health of every unit's last sync; see the module comment. */
export class HealthTracker {
  private readonly units = new Map<string, UnitHealth>();
  /** objectKey → units following it (two units may claim one object). */
  private readonly byKey = new Map<string, Set<string>>();
  /** namespace → followed workloads whose pods matter there. */
  private readonly byPodNamespace = new Map<string, Set<Followed>>();
  /** namespace → its pods by label pair (references to the pod watch's copies). */
  private readonly podIndex = new Map<string, PodIndex>();
  private readonly listeners = new Set<(report: HealthReport) => void>();
  /** The engine's own listeners (whenReady), told before the others. */
  private readonly internal = new Set<(report: HealthReport) => void>();
  /** Pending whenReady waits, ended by close(). */
  private readonly readyWaits = new Set<() => void>();
  private readonly now: () => number;
  private readonly timer: (fn: () => void, ms: number) => () => void;
  private readonly defer: (fn: () => void) => void;

  constructor(private readonly sources: TrackerSources) {
    this.now = sources.now ?? Date.now;
    this.timer = sources.timer ?? defaultTimer;
    this.defer = sources.defer ?? ((fn) => void setImmediate(fn));
  }

  /**
   * Makes `targets` the unit's followed set (the objects its sync applied plus those it pruned),
   * from now on. Waiters of the set it replaces resolve with that set's report as it stands.
   */
  follow(unit: string, commit: string | undefined, targets: readonly FollowTarget[]): void {
    const old = this.units.get(unit);
    const u: UnitHealth = {
      unit,
      ...(commit ? { commit } : {}),
      objects: new Map(),
      failed: 0,
      pendingApplied: 0,
      pendingPruned: 0,
      startedAt: this.now(),
      result: 'progressing',
      // A re-sync of the same commit changes the report only if an object is new, gone or judged anew.
      dirty: old === undefined || old.commit !== (commit || undefined),
      waiters: new Set(),
      cancelDeadlines: [],
    };
    this.units.set(unit, u);
    // The new set first, then the old one let go: what both follow carries over (its health is
    // kept current by events), and pod watches both need are kept, not restarted.
    this.addTargets(u, targets, old);
    if (old) {
      this.drop(old, u);
      // A re-sync of the same commit is news only where its report differs from the last one
      // told. Its wait goes on (a timed-out commit stays timed out while nothing changes), and
      // finding the same result it keeps its times.
      if (old.commit === u.commit) {
        u.digest = old.digest;
        u.ignorePruned = old.ignorePruned;
        if (old.deadline !== undefined) this.setDeadlines(u, old.deadline, old.pruneDeadline);
        if (this.resultOf(u) === old.result) {
          u.result = old.result;
          u.startedAt = old.startedAt;
          if (old.settledAt !== undefined) u.settledAt = old.settledAt;
        }
      }
    }
    this.flush(u);
  }

  /** Adds objects to the unit's followed set (a depends-on wave applied inside a sync). */
  extend(unit: string, commit: string | undefined, targets: readonly FollowTarget[]): void {
    const u = this.units.get(unit);
    if (!u || u.commit !== commit) return this.follow(unit, commit, targets);
    this.addTargets(u, targets);
    this.flush(u);
  }

  /** Stops following a unit (it was removed). */
  forget(unit: string): void {
    const u = this.units.get(unit);
    this.units.delete(unit);
    if (u) this.drop(u);
  }

  /** A watch-cache event for an object (changed or deleted); unknown objects are ignored cheaply. */
  objectEvent(key: string, type: 'changed' | 'deleted'): void {
    const names = this.byKey.get(key);
    if (!names) return;
    for (const name of names) {
      const u = this.units.get(name);
      const f = u?.objects.get(key);
      if (!u || !f) continue;
      if (f.target.pruned) {
        f.heard = true;
        f.gone = type === 'deleted';
      }
      this.recompute(u, f);
      this.schedule(u);
    }
  }

  /**
   * A pod of a watched namespace changed, appeared or went (`change`), or the namespace's pods
   * were (re-)listed (no `change`): the workloads the pod belongs to (before or after the change)
   * are recomputed, after a list all of the namespace's.
   */
  podEvent(namespace: string, change?: { type: 'changed' | 'deleted'; pod: KubeObject }): void {
    const followers = this.byPodNamespace.get(namespace);
    if (!followers) return;
    let before: Record<string, string> | undefined;
    if (change)
      before = updateIndex(this.podIndex.get(namespace) ?? this.indexPods(namespace), change.type, change.pod);
    else this.indexPods(namespace); // a fresh list: the index is rebuilt from it
    const after = change?.type === 'changed' ? (change.pod.metadata.labels ?? {}) : undefined;
    for (const f of followers) {
      const selector = f.podScope!.selector;
      if (change && !(before && selects(selector, before)) && !(after && selects(selector, after))) continue;
      const u = this.unitOf(f);
      if (!u) continue;
      this.recompute(u, f);
      this.schedule(u);
    }
  }

  /**
   * The answer of a one-time read of a pruned object (the cache drops what prune deleted, so only
   * an event or this read can tell a finalizer-held object from a gone one). Ignored once an event
   * for it arrived: the event is newer.
   */
  probed(unit: string, key: string, exists: boolean): void {
    const u = this.units.get(unit);
    const f = u?.objects.get(key);
    if (!u || !f || !f.target.pruned || f.heard) return;
    f.gone = !exists;
    this.recompute(u, f);
    this.schedule(u);
  }

  /** The unit's report now (undefined when nothing was ever followed for it). */
  health(unit: string): HealthReport | undefined {
    const u = this.units.get(unit);
    return u ? this.report(u) : undefined;
  }

  /** The health of one followed object (the engine's depends-on wait reads it). */
  stateOf(unit: string, key: string): ObjectHealth | undefined {
    return this.units.get(unit)?.objects.get(key)?.health;
  }

  /** The cached live object of a followed object by id (for a Kubernetes Event on it). */
  liveObject(unit: string, id: string): KubeObject | undefined {
    const u = this.units.get(unit);
    if (!u) return undefined;
    for (const f of u.objects.values()) if (f.target.id === id) return this.sources.live(f.target);
    return undefined;
  }

  /**
   * Resolves with the unit's report once it is healthy, degraded or timed out (the deadlines
   * start now), or with the report as it stands when `signal` aborts, `timeoutMs` is 0 or a
   * newer sync replaces the followed set.
   */
  waitHealth(
    unit: string,
    options: { timeoutMs: number; pruneTimeoutMs: number; signal?: AbortSignal },
  ): Promise<HealthReport> {
    const u = this.units.get(unit);
    if (!u) return Promise.resolve({ unit, result: 'healthy', objects: [], settledAt: this.now(), waitedMs: 0 });
    this.flush(u);
    if (u.result !== 'progressing' || options.timeoutMs <= 0 || options.signal?.aborted)
      return Promise.resolve(this.report(u));
    const start = this.now();
    // prune_timeout 0, as in cli-utils: pruned objects do not hold up the result (still reported as they go).
    u.ignorePruned = options.pruneTimeoutMs <= 0;
    this.setDeadlines(u, start + options.timeoutMs, u.ignorePruned ? undefined : start + options.pruneTimeoutMs);
    this.flush(u);
    if (u.result !== 'progressing') return Promise.resolve(this.report(u));
    return new Promise<HealthReport>((resolve) => {
      const onAbort = (): void => {
        waiter.cleanup();
        resolve(this.report(u));
      };
      const waiter: Waiter = {
        resolve,
        cleanup: () => {
          u.waiters.delete(waiter);
          options.signal?.removeEventListener('abort', onAbort);
        },
      };
      u.waiters.add(waiter);
      options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Resolves once every object of `keys` is current or failed, or `deadline` passes, or `signal`
   * aborts (the depends-on wait between waves); the caller reads `stateOf` afterwards.
   */
  whenReady(unit: string, keys: readonly string[], deadline: number | undefined, signal?: AbortSignal): Promise<void> {
    const ready = (): boolean =>
      keys.every((k) => {
        const s = this.stateOf(unit, k)?.state;
        return s === undefined || s === 'current' || s === 'failed';
      });
    if (ready() || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const finish = (): void => {
        off();
        cancel?.();
        signal?.removeEventListener('abort', finish);
        this.readyWaits.delete(finish);
        resolve();
      };
      this.readyWaits.add(finish);
      const off = this.onChange((r) => {
        if (r.unit === unit && ready()) finish();
      }, true);
      const cancel = deadline === undefined ? undefined : this.timer(finish, Math.max(0, deadline - this.now()));
      signal?.addEventListener('abort', finish, { once: true });
    });
  }

  /** Called once per change of a unit's report digest (result, or an object's state or reason). */
  onHealthChange(listener: (report: HealthReport) => void): () => void {
    return this.onChange(listener, false);
  }

  /** Stops every timer and pod watch; pending waits resolve with their report as it stands. */
  close(): void {
    for (const finish of [...this.readyWaits]) finish();
    for (const u of this.units.values()) this.drop(u);
    this.units.clear();
    this.listeners.clear();
  }

  private onChange(listener: (report: HealthReport) => void, internal: boolean): () => void {
    const set = internal ? this.internal : this.listeners;
    set.add(listener);
    return () => set.delete(listener);
  }

  private addTargets(u: UnitHealth, targets: readonly FollowTarget[], from?: UnitHealth): void {
    for (const target of targets) {
      const existing = u.objects.get(target.key);
      if (existing) {
        // Extended with an object it follows already: judged again if our write changed it.
        if (rvOf(this.sources.live(target)) !== existing.liveRv) this.recompute(u, existing);
        continue;
      }
      const carried = from?.objects.get(target.key);
      if (carried && sameKind(carried.target, target)) {
        carried.target = target;
        u.objects.set(target.key, carried);
        this.count(u, carried, +1);
        if (rvOf(this.sources.live(target)) !== carried.liveRv) this.recompute(u, carried);
        continue;
      }
      const f: Followed = { target, health: PENDING, rank: 1 };
      u.objects.set(target.key, f);
      let names = this.byKey.get(target.key);
      if (!names) this.byKey.set(target.key, (names = new Set()));
      names.add(u.unit);
      if (target.pruned) u.pendingPruned++;
      else u.pendingApplied++;
      this.recompute(u, f); // a new entry is always a change: its health was PENDING
    }
  }

  /** Stops everything a unit's followed set holds and resolves its waiters (`next`: the set replacing it). */
  private drop(u: UnitHealth, next?: UnitHealth): void {
    for (const f of u.objects.values()) {
      const successor = next?.objects.get(f.target.key);
      if (successor === f) continue; // carried over: still followed as it is
      if (next) next.dirty = true; // no longer followed as it was: the report changes
      f.cancelRecheck?.();
      this.setPodScope(f, undefined);
      if (successor) continue;
      const names = this.byKey.get(f.target.key);
      names?.delete(u.unit);
      if (names && !names.size) this.byKey.delete(f.target.key);
    }
    for (const cancel of u.cancelDeadlines) cancel();
    u.cancelDeadlines = [];
    if (!u.waiters.size) return;
    const report = this.report(u);
    for (const w of [...u.waiters]) {
      w.cleanup();
      w.resolve(report);
    }
  }

  private setDeadlines(u: UnitHealth, deadline: number, pruneDeadline: number | undefined): void {
    for (const cancel of u.cancelDeadlines) cancel();
    u.deadline = deadline;
    u.pruneDeadline = pruneDeadline;
    u.dirty = true;
    const now = this.now();
    const ends = pruneDeadline === undefined ? [deadline] : [deadline, pruneDeadline];
    u.cancelDeadlines = ends.map((at) =>
      this.timer(
        () => {
          u.dirty = true;
          this.flush(u);
        },
        Math.max(0, at - now),
      ),
    );
  }

  /** Recomputes one object's health and the unit's counts; schedules a re-check when time alone may change it. */
  private recompute(u: UnitHealth, f: Followed): void {
    const live = this.sources.live(f.target);
    if (!f.target.pruned && !f.target.held) this.setPodScope(f, live ? podsMatter(live) : undefined);
    const pods = f.podScope ? this.podsOf(f.podScope) : undefined;
    const now = this.now();
    const health = f.target.held
      ? { state: 'in_progress' as const, reason: 'DependencyNotReady', message: f.target.held }
      : f.target.pruned
        ? prunedHealth(live, f.gone)
        : healthOf(live, { ...(pods ? { pods } : {}), now });
    const rank = rankOf(health.state, f.target.pruned === true);
    if (health.state !== f.health.state || health.reason !== f.health.reason || health.message !== f.health.message)
      u.dirty = true;
    this.count(u, f, -1);
    f.liveRv = rvOf(live);
    f.health = health;
    f.rank = rank;
    this.count(u, f, +1);
    this.recheckLater(f, live, pods);
  }

  private count(u: UnitHealth, f: Followed, by: 1 | -1): void {
    if (f.rank === 0) u.failed += by;
    else if (f.rank === 1) {
      if (f.target.pruned) u.pendingPruned += by;
      else u.pendingApplied += by;
    }
  }

  /**
   * Grace rules (a pull failure is in_progress for a while, then failed) change with time alone:
   * one timer at the moment status.ts says the health can next change with no event.
   */
  private recheckLater(f: Followed, live: KubeObject | undefined, pods: readonly KubeObject[] | undefined): void {
    f.cancelRecheck?.();
    f.cancelRecheck = undefined;
    // Only pods wait on the clock (a Pod's own, a workload's): other kinds need no re-check.
    if (f.target.pruned || f.target.held || f.health.state === 'failed') return;
    if (live?.kind !== 'Pod' && !f.podScope) return;
    const now = this.now();
    const at = recheckAt(live, { ...(pods ? { pods } : {}), now });
    if (at === undefined) return;
    f.cancelRecheck = this.timer(
      () => {
        f.cancelRecheck = undefined;
        const u = this.unitOf(f);
        if (!u) return;
        this.recompute(u, f);
        this.schedule(u);
      },
      Math.max(0, at - now),
    );
  }

  private setPodScope(f: Followed, scope: Followed['podScope']): void {
    const before = f.podScope;
    if (before && scope && before.namespace === scope.namespace) {
      f.podScope = scope;
      return;
    }
    if (before) {
      const set = this.byPodNamespace.get(before.namespace);
      set?.delete(f);
      if (set && !set.size) {
        this.byPodNamespace.delete(before.namespace);
        this.podIndex.delete(before.namespace);
        this.sources.pods.release(before.namespace);
      }
    }
    f.podScope = scope;
    if (scope) {
      let set = this.byPodNamespace.get(scope.namespace);
      if (!set) {
        this.byPodNamespace.set(scope.namespace, (set = new Set()));
        this.sources.pods.acquire(scope.namespace);
      }
      set.add(f);
    }
  }

  /** The pods a selector picks: the smallest set of one of its label pairs, filtered by the rest. */
  private podsOf(scope: NonNullable<Followed['podScope']>): KubeObject[] {
    const index = this.podIndex.get(scope.namespace) ?? this.indexPods(scope.namespace);
    let smallest: Set<KubeObject> | undefined;
    for (const [k, v] of Object.entries(scope.selector)) {
      const set = index.byPair.get(`${k}\0${v}`);
      if (!set) return [];
      if (!smallest || set.size < smallest.size) smallest = set;
    }
    if (!smallest) return [];
    const out: KubeObject[] = [];
    for (const pod of smallest) if (selects(scope.selector, pod.metadata.labels ?? {})) out.push(pod);
    return out;
  }

  private indexPods(namespace: string): PodIndex {
    const index: PodIndex = { byName: new Map(), byPair: new Map() };
    for (const pod of this.sources.pods.pods(namespace)) updateIndex(index, 'changed', pod);
    if (this.byPodNamespace.has(namespace)) this.podIndex.set(namespace, index);
    return index;
  }

  private unitOf(f: Followed): UnitHealth | undefined {
    for (const name of this.byKey.get(f.target.key) ?? []) {
      const u = this.units.get(name);
      if (u?.objects.get(f.target.key) === f) return u;
    }
    return undefined;
  }

  /** Flushes once the current burst of events is over: one digest comparison per burst. */
  private schedule(u: UnitHealth): void {
    if (!u.dirty || u.flushQueued) return;
    u.flushQueued = true;
    this.defer(() => {
      u.flushQueued = false;
      if (this.units.get(u.unit) === u) this.flush(u);
    });
  }

  /** Recomputes the result; resolves settled waits; when the digest changed, tells listeners. */
  private flush(u: UnitHealth): void {
    const result = this.resultOf(u);
    if (result !== u.result) {
      u.result = result;
      u.settledAt = result === 'progressing' ? undefined : this.now();
      u.dirty = true;
    }
    if (!u.dirty) return;
    u.dirty = false;
    const report = this.report(u);
    if (result !== 'progressing')
      for (const w of [...u.waiters]) {
        w.cleanup();
        w.resolve(report);
      }
    // The engine's own waits look at every change; listeners only at what changes the digest.
    for (const cb of [...this.internal]) cb(report);
    const digest = digestOf(report);
    if (digest === u.digest) return;
    u.digest = digest;
    for (const cb of [...this.listeners]) {
      try {
        cb(report);
      } catch {
        // A listener's failure is its own (the runner catches and logs in its listener).
      }
    }
  }

  private resultOf(u: UnitHealth): HealthResult {
    if (u.failed) return 'degraded';
    const pendingPruned = u.ignorePruned ? 0 : u.pendingPruned;
    if (!u.pendingApplied && !pendingPruned) return 'healthy';
    const now = this.now();
    const late =
      (u.pendingApplied > 0 && u.deadline !== undefined && now >= u.deadline) ||
      (pendingPruned > 0 && u.pruneDeadline !== undefined && now >= u.pruneDeadline);
    return late ? 'timed_out' : 'progressing';
  }

  private report(u: UnitHealth): HealthReport {
    const buckets: ObjectHealthEntry[][] = [[], [], []];
    for (const f of u.objects.values())
      buckets[f.rank].push({ id: f.target.id, ...f.health, ...(f.target.pruned ? { pruned: true } : {}) });
    return {
      unit: u.unit,
      ...(u.commit ? { commit: u.commit } : {}),
      result: u.result,
      objects: buckets.flat(),
      ...(u.settledAt !== undefined
        ? { settledAt: u.settledAt, waitedMs: Math.max(0, u.settledAt - u.startedAt) }
        : {}),
    };
  }
}

const PENDING: ObjectHealth = { state: 'unknown', reason: 'Pending', message: 'not evaluated yet' };

/** A pruned object: terminating while it is there, not_found (done) once gone. */
export function prunedHealth(live: KubeObject | undefined, gone: boolean | undefined): ObjectHealth {
  if (live) {
    const h = healthOf(live);
    return h.state === 'terminating' ? h : { state: 'terminating', reason: 'Deleting', message: 'deletion requested' };
  }
  if (gone) return { state: 'not_found', reason: 'Deleted', message: 'pruned and gone' };
  return { state: 'terminating', reason: 'Deleting', message: 'deletion requested, not yet confirmed gone' };
}

/** Rank in a report and in the counts: 0 failed, 1 not done, 2 done. */
export function rankOf(state: HealthState, pruned: boolean): 0 | 1 | 2 {
  if (state === 'failed') return 0;
  if (pruned ? state === 'not_found' : state === 'current') return 2;
  return 1;
}

/** Puts a pod in (or, deleted, takes it out of) the index; returns the labels it had before. */
function updateIndex(
  index: PodIndex,
  type: 'changed' | 'deleted',
  pod: KubeObject,
): Record<string, string> | undefined {
  const name = pod.metadata.name;
  const old = index.byName.get(name);
  if (old)
    for (const [k, v] of Object.entries(old.metadata.labels ?? {})) {
      const set = index.byPair.get(`${k}\0${v}`);
      set?.delete(old);
      if (set && !set.size) index.byPair.delete(`${k}\0${v}`);
    }
  if (type === 'deleted') {
    index.byName.delete(name);
    return old?.metadata.labels ?? pod.metadata.labels ?? {};
  }
  index.byName.set(name, pod);
  for (const [k, v] of Object.entries(pod.metadata.labels ?? {})) {
    const key = `${k}\0${v}`;
    let set = index.byPair.get(key);
    if (!set) index.byPair.set(key, (set = new Set()));
    set.add(pod);
  }
  return old?.metadata.labels;
}

/** Followed the same way (applied, pruned or held): only then can its health carry over. */
function sameKind(a: FollowTarget, b: FollowTarget): boolean {
  return (a.pruned === true) === (b.pruned === true) && a.held === b.held;
}

function rvOf(obj: KubeObject | undefined): string | undefined {
  return obj?.metadata.resourceVersion;
}

/** matchLabels semantics: every pair present on the pod. */
export function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** What listeners are told about: commit, result and every object's id, state, reason and pruned flag. */
export function digestOf(report: HealthReport): string {
  const h = createHash('sha256').update(`${report.commit ?? ''}\0${report.result}`);
  for (const o of report.objects) h.update(`\0${o.id}\0${o.state}\0${o.reason}\0${o.pruned ? 1 : 0}`);
  return h.digest('hex').slice(0, 32);
}
