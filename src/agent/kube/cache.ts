/**
 * Watch cache: what the agent knows about the objects it manages, kept current by one
 * list-then-watch per resource type (label-selected, all namespaces), so an unchanged re-sync
 * needs no GET per object and drift is seen as it happens.
 *
 * Ordering without comparing resourceVersions (the API contract forbids treating them as numbers):
 * events of one watch arrive in order, so the newest is the last one seen. A write's response is
 * put in the store at once and wins until the watch delivers that same resourceVersion (the echo
 * of our own write, not re-emitted); everything after the echo is newer and taken as is.
 * Re-lists on 410 Gone, re-watches from the last bookmark when the server closes the stream, and
 * reconnects with capped backoff when the API server goes away.
 */
import type { Logger } from '../../common/logger.js';
import { silentLogger } from '../../common/logger.js';
import { errorMessage } from '../../common/errors.js';
import { isTransient, KubeApiError, type KubeClient, type WatchEvent, type WatchHandle } from './client.js';
import type { KubeObject, ResourceInfo } from './types.js';
import { ProblemCode } from '../../protocol/problems.js';

/** A change to a cached object that did not come from our own write. */
export interface CacheEvent {
  type: 'changed' | 'deleted';
  resource: ResourceInfo;
  /** `namespace/name` (`/name` for cluster-scoped objects). */
  key: string;
  object: KubeObject;
}
export type CacheListener = (e: CacheEvent) => void;

/** After this long an unechoed write response no longer blocks watch events for its object. */
const ECHO_WAIT_MS = 10_000;
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5_000;
const FIRST_LIST_RETRY_MS = 15_000;

/**
 * Drops the managedFields entries no reader of the cache needs: our own manager's and those of
 * subresources (status). Drift names the other manager of a changed field from what is left;
 * nothing else reads managedFields. Our own entry is most of an object's size in memory (its
 * fieldsV1 mirrors every field we apply), times every managed object.
 */
export function slimManagedFields(obj: KubeObject, ours: string): KubeObject {
  const entries = obj.metadata?.managedFields;
  if (!entries) return obj;
  const others = entries.filter((e) => e.manager !== ours && !e.subresource);
  if (others.length === entries.length) return obj;
  const { managedFields: _all, ...metadata } = obj.metadata;
  return { ...obj, metadata: others.length ? { ...metadata, managedFields: others } : metadata };
}

/**
 * A pod as the health tracker needs it (status.ts reads no more): identity, labels, owners,
 * creation and deletion time; phase, reason, message, conditions, and each container's ready
 * flag, restarts, state and last termination (a crash loop between back-offs is told from its
 * last exit). Pods are not ours and a namespace may hold many, so the rest (spec, managedFields,
 * annotations) is not kept.
 */
export function slimPod(pod: KubeObject): KubeObject {
  const m = pod.metadata;
  const status = (pod.status ?? {}) as {
    phase?: unknown;
    reason?: unknown;
    message?: unknown;
    conditions?: unknown;
    containerStatuses?: ContainerStatusLike[];
    initContainerStatuses?: ContainerStatusLike[];
  };
  const containers = (list: ContainerStatusLike[] | undefined): ContainerStatusLike[] | undefined =>
    list?.map((c) => ({
      name: c.name,
      ready: c.ready,
      restartCount: c.restartCount,
      state: c.state,
      ...(c.lastState?.terminated !== undefined ? { lastState: { terminated: c.lastState.terminated } } : {}),
    }));
  const init = containers(status.initContainerStatuses);
  const main = containers(status.containerStatuses);
  return {
    apiVersion: pod.apiVersion ?? 'v1',
    kind: pod.kind ?? 'Pod',
    metadata: {
      name: m.name,
      ...(m.namespace ? { namespace: m.namespace } : {}),
      ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}),
      ...(m.labels ? { labels: m.labels } : {}),
      ...(m.creationTimestamp ? { creationTimestamp: m.creationTimestamp } : {}),
      ...(m.deletionTimestamp ? { deletionTimestamp: m.deletionTimestamp } : {}),
      ...(m.ownerReferences ? { ownerReferences: m.ownerReferences } : {}),
    },
    status: {
      ...(status.phase !== undefined ? { phase: status.phase } : {}),
      ...(status.reason !== undefined ? { reason: status.reason } : {}),
      ...(status.message !== undefined ? { message: status.message } : {}),
      ...(status.conditions !== undefined ? { conditions: status.conditions } : {}),
      ...(init ? { initContainerStatuses: init } : {}),
      ...(main ? { containerStatuses: main } : {}),
    },
  };
}

interface ContainerStatusLike {
  name?: unknown;
  ready?: unknown;
  restartCount?: unknown;
  state?: unknown;
  lastState?: { terminated?: unknown };
}

/** How one cache is scoped: a namespace (all when absent) and how objects are slimmed before they are kept. */
export interface CacheScope {
  namespace?: string;
  shape?: (obj: KubeObject) => KubeObject;
}

function storeKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

interface Entry {
  object: KubeObject;
  /** resourceVersion of our own write still waiting for its watch echo. */
  awaitRv?: string;
  awaitSince?: number;
  /** Last resourceVersion the watch delivered for this object. */
  watchRv?: string;
}

/** Cache of one resource type. */
export class ResourceCache {
  private store = new Map<string, Entry>();
  private rv = '';
  private handle: WatchHandle | undefined;
  private stopped = false;
  private backoff = BACKOFF_MIN_MS;
  private readonly listeners = new Set<CacheListener>();
  /** Objects with a write of ours in flight: their watch events wait for the write's response. */
  private readonly inflight = new Map<string, { count: number; held: WatchEvent[] }>();
  /**
   * Objects we deleted and dropped from the store: their watch DELETED event is still emitted
   * (the health tracker follows a pruned object until it is gone, a finalizer may hold it).
   */
  private readonly removed = new Set<string>();
  readonly ready: Promise<void>;

  constructor(
    private readonly client: KubeClient,
    readonly resource: ResourceInfo,
    private readonly labelSelector: string | undefined,
    private readonly log: Logger = silentLogger(),
    private readonly scope: CacheScope = {},
  ) {
    this.ready = this.firstList().then(() => void this.loop());
  }

  /** Every cached object (the pod watch's pods of its namespace). */
  objects(): KubeObject[] {
    return [...this.store.values()].map((e) => e.object);
  }

  private slim(obj: KubeObject): KubeObject {
    return this.scope.shape ? this.scope.shape(obj) : slimManagedFields(obj, this.client.fieldManager);
  }

  /**
   * The first list, retried on transient answers (a CRD's storage "(re)initializing" right after it is Established).
   */
  private async firstList(): Promise<void> {
    const deadline = Date.now() + FIRST_LIST_RETRY_MS;
    for (let delay = BACKOFF_MIN_MS; ; delay = Math.min(delay * 2, 1_000)) {
      try {
        return await this.relist(true);
      } catch (err) {
        if (!isTransient(err) || Date.now() > deadline || this.stopped) throw err;
        await sleep(delay);
      }
    }
  }

  get(namespace: string | undefined, name: string): KubeObject | undefined {
    return this.store.get(storeKey(namespace, name))?.object;
  }

  /** Puts a write response into the store at once; it wins until its own watch echo arrives. */
  upsert(response: KubeObject): void {
    const obj = slimManagedFields(response, this.client.fieldManager);
    const key = storeKey(obj.metadata.namespace, obj.metadata.name);
    const prev = this.store.get(key);
    const rv = obj.metadata.resourceVersion;
    // A no-op write returns the resourceVersion the watch already delivered: nothing to wait for.
    const echoed = rv !== undefined && prev?.watchRv === rv;
    this.store.set(key, {
      object: obj,
      watchRv: prev?.watchRv,
      ...(echoed ? {} : { awaitRv: rv, awaitSince: Date.now() }),
    });
  }

  /**
   * Call before sending a write for an object. Watch events for it are held until `endWrite`,
   * because the echo of our own write can arrive before the write's response does.
   */
  beginWrite(namespace: string | undefined, name: string): void {
    const key = storeKey(namespace, name);
    const w = this.inflight.get(key);
    if (w) w.count++;
    else this.inflight.set(key, { count: 1, held: [] });
  }

  /**
   * Call when the write finished, with its response when it succeeded. Held events up to the
   * response's own resourceVersion are ours or older and are dropped; later ones are replayed.
   * Without a response (the write failed) every held event is replayed.
   */
  endWrite(namespace: string | undefined, name: string, response?: KubeObject): void {
    const key = storeKey(namespace, name);
    const w = this.inflight.get(key);
    if (!w) {
      if (response) this.upsert(response);
      return;
    }
    if (--w.count > 0) {
      if (response) this.upsert(response);
      return;
    }
    this.inflight.delete(key);
    let replay = w.held;
    if (response) {
      const rv = response.metadata.resourceVersion;
      const echo = w.held.findIndex((e) => e.object.metadata?.resourceVersion === rv);
      if (echo >= 0) {
        this.store.set(key, { object: w.held[echo].object, watchRv: rv });
        replay = w.held.slice(echo + 1);
      } else {
        // The echo is still to come: everything held happened before our write.
        const last = w.held[w.held.length - 1];
        if (last)
          this.store.set(key, {
            ...(this.store.get(key) ?? { object: response }),
            watchRv: last.object.metadata?.resourceVersion,
          });
        this.upsert(response);
        replay = [];
      }
    }
    for (const ev of replay) this.onEvent(ev);
  }

  /** Drops an object we deleted (the watch's DELETED event will agree). */
  remove(namespace: string | undefined, name: string): void {
    const key = storeKey(namespace, name);
    this.store.delete(key);
    this.removed.add(key);
  }

  on(cb: CacheListener): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  stop(): void {
    this.stopped = true;
    this.handle?.abort();
  }

  private emit(e: CacheEvent): void {
    for (const cb of this.listeners) {
      try {
        cb(e);
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'cache listener failed');
      }
    }
  }

  private async relist(first: boolean): Promise<void> {
    const res = await this.client.list(this.resource, {
      labelSelector: this.labelSelector,
      ...(this.scope.namespace ? { namespace: this.scope.namespace } : {}),
    });
    this.removed.clear();
    const seen = new Set<string>();
    for (const item of res.items) {
      const obj = this.slim(item);
      const key = storeKey(obj.metadata.namespace, obj.metadata.name);
      seen.add(key);
      const prev = this.store.get(key);
      this.store.set(key, { object: obj, watchRv: obj.metadata.resourceVersion });
      if (!first && prev?.object.metadata.resourceVersion !== obj.metadata.resourceVersion) {
        this.emit({ type: 'changed', resource: this.resource, key, object: obj });
      }
    }
    for (const [key, entry] of this.store) {
      if (!seen.has(key)) {
        this.store.delete(key);
        if (!first) this.emit({ type: 'deleted', resource: this.resource, key, object: entry.object });
      }
    }
    this.rv = res.resourceVersion;
  }

  private onEvent(ev: WatchEvent): void {
    if (ev.type === 'BOOKMARK') {
      if (ev.object.metadata?.resourceVersion) this.rv = ev.object.metadata.resourceVersion;
      return;
    }
    if (ev.type === 'ERROR') {
      throw new KubeApiError(
        'retryable',
        ProblemCode.KUBE_WATCH_ERROR,
        `${this.resource.kind} watch`,
        ev.object.code ?? 0,
        ev.object,
      );
    }
    const rv = ev.object.metadata?.resourceVersion;
    if (rv) this.rv = rv;
    const obj = this.slim(ev.object);
    const key = storeKey(obj.metadata.namespace, obj.metadata.name);
    const writing = this.inflight.get(key);
    if (writing) {
      writing.held.push({ ...ev, object: obj as WatchEvent['object'] });
      return;
    }
    if (ev.type === 'DELETED') {
      // A deletion always follows any write of ours that succeeded, so it is never stale.
      const existed = this.store.delete(key);
      const ours = this.removed.delete(key);
      if (existed || ours) this.emit({ type: 'deleted', resource: this.resource, key, object: obj });
      return;
    }
    const prev = this.store.get(key);
    if (prev?.awaitRv !== undefined) {
      if (prev.awaitRv === rv) {
        // The echo of our own write: nothing new, nothing to tell drift about.
        this.store.set(key, { object: obj, watchRv: rv });
        return;
      }
      if (Date.now() - (prev.awaitSince ?? 0) < ECHO_WAIT_MS) {
        // Older than our write response (it would have come after the echo otherwise).
        prev.watchRv = rv;
        return;
      }
    }
    this.store.set(key, { object: obj, watchRv: rv });
    this.emit({ type: 'changed', resource: this.resource, key, object: obj });
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      this.handle = this.client.watch(
        this.resource,
        {
          labelSelector: this.labelSelector,
          resourceVersion: this.rv,
          ...(this.scope.namespace ? { namespace: this.scope.namespace } : {}),
        },
        (ev) => this.onEvent(ev),
      );
      const { error } = await this.handle.done;
      if (this.stopped) return;
      if (!error) {
        this.backoff = BACKOFF_MIN_MS;
        continue; // server closed the stream (timeout): watch again from the last resourceVersion
      }
      const gone = error instanceof KubeApiError && (error.status === 410 || /too old|Expired/i.test(error.message));
      if (!gone) {
        this.log.debug(
          { resource: this.resource.plural, err: errorMessage(error), backoffMs: this.backoff },
          'watch ended, reconnecting',
        );
        await sleep(this.backoff);
        this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
      }
      // Re-list (after 410 or a broken connection: events may have been missed while away).
      while (!this.stopped) {
        try {
          await this.relist(false);
          this.backoff = BACKOFF_MIN_MS;
          break;
        } catch (err) {
          this.log.debug({ resource: this.resource.plural, err: errorMessage(err) }, 're-list failed, retrying');
          await sleep(this.backoff);
          this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
        }
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref?.());
}

function cacheKey(resource: ResourceInfo): string {
  return `${resource.group}/${resource.version}/${resource.plural}`;
}

/** All resource caches of one client, started on first use and shared by every sync unit. */
export class WatchCache {
  private caches = new Map<string, ResourceCache>();
  private readonly listeners = new Set<CacheListener>();

  constructor(
    private readonly client: KubeClient,
    private readonly labelSelector: string | undefined,
    private readonly log: Logger = silentLogger(),
  ) {}

  /** The cache of a resource type, listed and watching (waits for the first list). */
  async for(resource: ResourceInfo): Promise<ResourceCache> {
    const k = cacheKey(resource);
    let c = this.caches.get(k);
    if (!c) {
      c = new ResourceCache(this.client, resource, this.labelSelector, this.log);
      c.on((e) => {
        for (const cb of this.listeners) cb(e);
      });
      this.caches.set(k, c);
      c.ready.catch(() => {
        if (this.caches.get(k) === c) this.caches.delete(k);
      });
    }
    await c.ready;
    return c;
  }

  /** Already-started cache, without waiting (undefined when none). */
  peek(resource: ResourceInfo): ResourceCache | undefined {
    return this.caches.get(cacheKey(resource));
  }

  on(cb: CacheListener): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  close(): void {
    for (const c of this.caches.values()) c.stop();
    this.caches.clear();
  }
}

/** The core Pod resource (pods are watched per namespace, without a label selector: they carry none of ours). */
export const POD_RESOURCE: ResourceInfo = { group: '', version: 'v1', kind: 'Pod', plural: 'pods', namespaced: true };

/** A pod appeared, changed or went in a watched namespace; `synced` after each (re-)list of one. */
export type PodEvent =
  { type: 'changed' | 'deleted'; namespace: string; pod: KubeObject } | { type: 'synced'; namespace: string };

/**
 * Pod watches, one per namespace, started on demand and stopped when their last user lets go:
 * the health tracker holds one for each namespace that has a followed workload. Pods are kept
 * slim (`slimPod`).
 */
export class PodWatches {
  private readonly watches = new Map<string, { cache: ResourceCache; users: number }>();
  private readonly listeners = new Set<(e: PodEvent) => void>();

  constructor(
    private readonly client: KubeClient,
    private readonly log: Logger = silentLogger(),
  ) {}

  acquire(namespace: string): void {
    const w = this.watches.get(namespace);
    if (w) {
      w.users++;
      return;
    }
    const cache = new ResourceCache(this.client, POD_RESOURCE, undefined, this.log, { namespace, shape: slimPod });
    this.watches.set(namespace, { cache, users: 1 });
    cache.on((e) => this.emit({ type: e.type, namespace, pod: e.object }));
    cache.ready.then(
      () => this.emit({ type: 'synced', namespace }),
      (err: unknown) => {
        // Health falls back to the workloads' own status; the next acquire after a release retries.
        this.log.warn({ namespace, err: errorMessage(err) }, 'pod list failed');
        if (this.watches.get(namespace)?.cache === cache) this.watches.delete(namespace);
      },
    );
  }

  release(namespace: string): void {
    const w = this.watches.get(namespace);
    if (!w || --w.users > 0) return;
    w.cache.stop();
    this.watches.delete(namespace);
  }

  /** The namespace's pods (empty before its first list or when it is not watched). */
  pods(namespace: string): KubeObject[] {
    return this.watches.get(namespace)?.cache.objects() ?? [];
  }

  /** Namespaces watched now (for tests and metrics). */
  namespaces(): string[] {
    return [...this.watches.keys()];
  }

  on(cb: (e: PodEvent) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  close(): void {
    for (const w of this.watches.values()) w.cache.stop();
    this.watches.clear();
  }

  private emit(e: PodEvent): void {
    for (const cb of this.listeners) {
      try {
        cb(e);
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'pod listener failed');
      }
    }
  }
}
