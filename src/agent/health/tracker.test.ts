import { describe, expect, it } from '@jest/globals';
import { POD_FAILURE_GRACE_MS } from './status.js';
import { HealthTracker, rankOf, selects, type FollowTarget } from './tracker.js';
import type { KubeObject, ResourceInfo } from '../kube/types.js';
import type { HealthReport } from './types.js';

const CONFIGMAPS: ResourceInfo = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};
const WIDGETS: ResourceInfo = { group: 'x.test', version: 'v1', kind: 'Widget', plural: 'widgets', namespaced: true };
const DEPLOYMENTS: ResourceInfo = {
  group: 'apps',
  version: 'v1',
  kind: 'Deployment',
  plural: 'deployments',
  namespaced: true,
};

/** A fake world: objects by key, pods by namespace, a clock with timers, a deferred-work queue. */
class World {
  objects = new Map<string, KubeObject>();
  pods = new Map<string, KubeObject[]>();
  acquired: string[] = [];
  released: string[] = [];
  now = 1_000_000;
  timers: Array<{ at: number; fn: () => void; cancelled: boolean }> = [];
  deferred: Array<() => void> = [];
  readonly tracker: HealthTracker;

  constructor() {
    this.tracker = new HealthTracker({
      live: (t) => this.objects.get(t.key),
      pods: {
        acquire: (ns) => this.acquired.push(ns),
        release: (ns) => this.released.push(ns),
        pods: (ns) => this.pods.get(ns) ?? [],
      },
      now: () => this.now,
      timer: (fn, ms) => {
        const t = { at: this.now + ms, fn, cancelled: false };
        this.timers.push(t);
        return () => (t.cancelled = true);
      },
      defer: (fn) => this.deferred.push(fn),
    });
  }

  /** Runs what the tracker deferred to the end of the burst. */
  drain(): void {
    while (this.deferred.length) this.deferred.shift()!();
  }

  advance(ms: number): void {
    this.now += ms;
    for (const t of this.timers.filter((t) => !t.cancelled && t.at <= this.now)) {
      t.cancelled = true;
      t.fn();
    }
    this.drain();
  }

  set(target: FollowTarget, obj: KubeObject | undefined, type: 'changed' | 'deleted' = 'changed'): void {
    if (obj) this.objects.set(target.key, obj);
    else this.objects.delete(target.key);
    this.tracker.objectEvent(target.key, type);
  }
}

function target(resource: ResourceInfo, name: string, pruned = false): FollowTarget {
  return {
    key: `${resource.group}/${resource.kind}/demo/${name}`,
    id: `${resource.kind}/demo/${name}`,
    resource,
    namespace: 'demo',
    name,
    ...(pruned ? { pruned: true } : {}),
  };
}

function configMap(name: string, extra: Partial<KubeObject['metadata']> = {}): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'demo', ...extra }, data: {} };
}

function widget(name: string, conditions: Array<{ type: string; status: string; reason?: string }> = []): KubeObject {
  return {
    apiVersion: 'x.test/v1',
    kind: 'Widget',
    metadata: { name, namespace: 'demo', generation: 1 },
    status: { observedGeneration: 1, conditions: conditions.map((c) => ({ message: '', reason: 'Test', ...c })) },
  };
}

const ready = (name: string): KubeObject => widget(name, [{ type: 'Ready', status: 'True' }]);
const notReady = (name: string): KubeObject =>
  widget(name, [
    { type: 'Ready', status: 'False', reason: 'Working' },
    { type: 'Reconciling', status: 'True', reason: 'Working' },
  ]);
const stalled = (name: string): KubeObject =>
  widget(name, [
    { type: 'Ready', status: 'False', reason: 'Broken' },
    { type: 'Stalled', status: 'True', reason: 'Broken' },
  ]);

function deployment(name: string): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'demo', generation: 1 },
    spec: { replicas: 1, selector: { matchLabels: { app: name } } },
    status: { observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 0, availableReplicas: 0 },
  };
}

const states = (r: HealthReport | undefined): string[] => (r?.objects ?? []).map((o) => `${o.id}=${o.state}`);

describe('HealthTracker', () => {
  it('reports a set of objects that exist and need nothing more as healthy at once', async () => {
    const w = new World();
    const a = target(CONFIGMAPS, 'a');
    w.objects.set(a.key, configMap('a'));
    w.tracker.follow('u', 'c1', [a]);
    const report = await w.tracker.waitHealth('u', { timeoutMs: 60_000, pruneTimeoutMs: 60_000 });
    expect(report).toMatchObject({ unit: 'u', commit: 'c1', result: 'healthy', waitedMs: 0 });
    expect(states(report)).toEqual(['ConfigMap/demo/a=current']);
  });

  it('waits for a custom resource to become Ready, then resolves healthy with the time waited', async () => {
    const w = new World();
    const a = target(WIDGETS, 'a');
    w.objects.set(a.key, notReady('a'));
    w.tracker.follow('u', 'c1', [a]);
    const wait = w.tracker.waitHealth('u', { timeoutMs: 60_000, pruneTimeoutMs: 60_000 });
    expect(w.tracker.health('u')?.result).toBe('progressing');
    w.now += 1_500;
    w.set(a, ready('a'));
    w.drain();
    await expect(wait).resolves.toMatchObject({ result: 'healthy', waitedMs: 1_500, settledAt: w.now });
  });

  it('resolves degraded as soon as one object fails, long before the timeout', async () => {
    const w = new World();
    const a = target(WIDGETS, 'a');
    const b = target(WIDGETS, 'b');
    w.objects.set(a.key, notReady('a'));
    w.objects.set(b.key, { ...notReady('b'), metadata: { ...notReady('b').metadata, resourceVersion: '2' } });
    w.tracker.follow('u', 'c1', [a, b]);
    const wait = w.tracker.waitHealth('u', { timeoutMs: 600_000, pruneTimeoutMs: 600_000 });
    w.now += 10;
    w.set(b, stalled('b'));
    w.drain();
    const report = await wait;
    expect(report.result).toBe('degraded');
    // Failed first, then what is still in progress.
    expect(states(report)).toEqual(['Widget/demo/b=failed', 'Widget/demo/a=in_progress']);
  });

  it('times out at the deadline, naming what is still in progress', async () => {
    const w = new World();
    const a = target(WIDGETS, 'a');
    const c = target(CONFIGMAPS, 'c');
    w.objects.set(a.key, notReady('a'));
    w.objects.set(c.key, configMap('c'));
    w.tracker.follow('u', 'c1', [c, a]);
    const wait = w.tracker.waitHealth('u', { timeoutMs: 2_000, pruneTimeoutMs: 2_000 });
    w.advance(1_999);
    expect(w.tracker.health('u')?.result).toBe('progressing');
    w.advance(1);
    const report = await wait;
    expect(report.result).toBe('timed_out');
    expect(report.waitedMs).toBe(2_000);
    expect(states(report)).toEqual(['Widget/demo/a=in_progress', 'ConfigMap/demo/c=current']);
  });

  it('resolves at once with the report as it stands for timeoutMs 0, and never times out by itself', async () => {
    const w = new World();
    const a = target(WIDGETS, 'a');
    w.objects.set(a.key, notReady('a'));
    w.tracker.follow('u', 'c1', [a]);
    await expect(w.tracker.waitHealth('u', { timeoutMs: 0, pruneTimeoutMs: 0 })).resolves.toMatchObject({
      result: 'progressing',
    });
    w.advance(3_600_000);
    expect(w.tracker.health('u')?.result).toBe('progressing');
  });

  it('resolves with the progressing snapshot when the signal aborts or a newer sync replaces the set', async () => {
    const w = new World();
    const a = target(WIDGETS, 'a');
    w.objects.set(a.key, notReady('a'));
    w.tracker.follow('u', 'c1', [a]);
    const abort = new AbortController();
    const aborted = w.tracker.waitHealth('u', { timeoutMs: 60_000, pruneTimeoutMs: 60_000, signal: abort.signal });
    abort.abort();
    await expect(aborted).resolves.toMatchObject({ result: 'progressing', commit: 'c1' });

    const replaced = w.tracker.waitHealth('u', { timeoutMs: 60_000, pruneTimeoutMs: 60_000 });
    w.tracker.follow('u', 'c2', [a]);
    await expect(replaced).resolves.toMatchObject({ result: 'progressing', commit: 'c1' });
    expect(w.tracker.health('u')?.commit).toBe('c2');
  });

  it('follows a pruned object until it is gone, terminating while a finalizer holds it', async () => {
    const w = new World();
    const keep = target(CONFIGMAPS, 'keep');
    const old = target(CONFIGMAPS, 'old', true);
    w.objects.set(keep.key, configMap('keep'));
    w.tracker.follow('u', 'c1', [keep, old]);
    const wait = w.tracker.waitHealth('u', { timeoutMs: 60_000, pruneTimeoutMs: 60_000 });
    expect(w.tracker.health('u')?.objects[0]).toMatchObject({
      id: 'ConfigMap/demo/old',
      state: 'terminating',
      pruned: true,
    });
    // The one read after prune found it still there; then the watch says it is being deleted.
    w.tracker.probed('u', old.key, true);
    w.set(old, configMap('old', { deletionTimestamp: '2026-12-06T21:00:00Z', finalizers: ['x.test/hold'] }));
    w.drain();
    expect(w.tracker.health('u')?.result).toBe('progressing');
    w.set(old, undefined, 'deleted');
    w.drain();
    const report = await wait;
    expect(report.result).toBe('healthy');
    expect(report.objects).toContainEqual(
      expect.objectContaining({ id: 'ConfigMap/demo/old', state: 'not_found', pruned: true }),
    );
  });

  it('takes the probe of a pruned object only while no event said otherwise', () => {
    const w = new World();
    const old = target(CONFIGMAPS, 'old', true);
    w.tracker.follow('u', 'c1', [old]);
    w.set(old, undefined, 'deleted');
    w.tracker.probed('u', old.key, true); // read before the delete, answered after the event
    w.drain();
    expect(w.tracker.health('u')?.result).toBe('healthy');

    const w2 = new World();
    w2.tracker.follow('u', 'c1', [old]);
    w2.tracker.probed('u', old.key, false);
    w2.drain();
    expect(w2.tracker.health('u')?.result).toBe('healthy');
  });

  it('gives pruned objects their own deadline', async () => {
    const w = new World();
    const old = target(CONFIGMAPS, 'old', true);
    w.tracker.follow('u', 'c1', [old]);
    w.tracker.probed('u', old.key, true);
    const wait = w.tracker.waitHealth('u', { timeoutMs: 60_000, pruneTimeoutMs: 1_000 });
    w.advance(1_000);
    const report = await wait;
    expect(report.result).toBe('timed_out');
    expect(report.objects[0]).toMatchObject({ id: 'ConfigMap/demo/old', state: 'terminating', pruned: true });
  });

  it('does not let pruned objects hold up the result when pruneTimeoutMs is 0, as cli-utils', async () => {
    const w = new World();
    const keep = target(CONFIGMAPS, 'keep');
    const old = target(CONFIGMAPS, 'old', true);
    w.objects.set(keep.key, configMap('keep'));
    w.tracker.follow('u', 'c1', [keep, old]);
    w.tracker.probed('u', old.key, true);
    const report = await w.tracker.waitHealth('u', { timeoutMs: 60_000, pruneTimeoutMs: 0 });
    expect(report.result).toBe('healthy');
    expect(report.objects).toContainEqual(
      expect.objectContaining({ id: 'ConfigMap/demo/old', state: 'terminating', pruned: true }),
    );
  });

  it('keeps an object a depends-on wait held back in progress: the commit is not healthy without it', async () => {
    const w = new World();
    const a = target(WIDGETS, 'a');
    const b: FollowTarget = { ...target(CONFIGMAPS, 'b'), held: 'depends on Widget/demo/a, which is in_progress' };
    w.objects.set(a.key, notReady('a'));
    w.tracker.follow('u', 'c1', [a, b]);
    const wait = w.tracker.waitHealth('u', { timeoutMs: 5_000, pruneTimeoutMs: 5_000 });
    w.set(a, ready('a'));
    w.drain();
    expect(w.tracker.health('u')?.result).toBe('progressing');
    w.advance(5_000);
    const report = await wait;
    expect(report.result).toBe('timed_out');
    expect(report.objects[0]).toMatchObject({
      id: 'ConfigMap/demo/b',
      state: 'in_progress',
      reason: 'DependencyNotReady',
      message: 'depends on Widget/demo/a, which is in_progress',
    });
  });

  it('tells listeners once per change of the report, not once per event, also after the wait settled', async () => {
    const w = new World();
    const a = target(WIDGETS, 'a');
    w.objects.set(a.key, notReady('a'));
    const heard: HealthReport[] = [];
    w.tracker.onHealthChange((r) => heard.push(r));
    w.tracker.follow('u', 'c1', [a]);
    expect(heard.map((r) => r.result)).toEqual(['progressing']);
    const wait = w.tracker.waitHealth('u', { timeoutMs: 60_000, pruneTimeoutMs: 60_000 });
    // Three events in one burst, the same state each time: nothing new.
    for (let i = 0; i < 3; i++) w.set(a, notReady('a'));
    w.drain();
    expect(heard).toHaveLength(1);
    w.set(a, ready('a'));
    w.drain();
    await expect(wait).resolves.toMatchObject({ result: 'healthy' });
    w.set(a, ready('a'));
    w.drain();
    expect(heard.map((r) => r.result)).toEqual(['progressing', 'healthy']);
    // Settled, still followed: the object breaking later changes the report once.
    w.set(a, stalled('a'));
    w.set(a, stalled('a'));
    w.drain();
    expect(heard.map((r) => r.result)).toEqual(['progressing', 'healthy', 'degraded']);
  });

  it('watches the pods of a namespace while a workload there is followed, and re-evaluates on pod events', () => {
    const w = new World();
    const d = target(DEPLOYMENTS, 'web');
    w.objects.set(d.key, deployment('web'));
    w.tracker.follow('u', 'c1', [d]);
    expect(w.acquired).toEqual(['demo']);
    expect(w.tracker.health('u')?.objects[0].state).toBe('in_progress');

    // A pod of ours whose image pull fails: in progress within the kubelet's grace, failed after
    // it, with no event in between (one timer, not a poll).
    const pod: KubeObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'web-1',
        namespace: 'demo',
        // As its ReplicaSet labels it: the revision tells this Deployment's pods from others'.
        labels: { app: 'web', 'pod-template-hash': '5d4f8c' },
        creationTimestamp: new Date(w.now).toISOString(),
      },
      status: {
        phase: 'Pending',
        containerStatuses: [
          {
            name: 'web',
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "nope"' } },
          },
        ],
      },
    };
    w.pods.set('demo', [pod]);
    w.tracker.podEvent('demo', { type: 'changed', pod });
    w.drain();
    expect(w.tracker.health('u')?.result).toBe('progressing');
    w.advance(POD_FAILURE_GRACE_MS);
    expect(w.tracker.health('u')).toMatchObject({ result: 'degraded', objects: [{ state: 'failed' }] });

    // The failing pod goes (its ReplicaSet replaces it): the Deployment is back in progress.
    w.pods.set('demo', []);
    w.tracker.podEvent('demo', { type: 'deleted', pod });
    w.drain();
    expect(w.tracker.health('u')).toMatchObject({ result: 'progressing', objects: [{ state: 'in_progress' }] });

    w.tracker.follow('u', 'c2', [target(CONFIGMAPS, 'a')]);
    expect(w.released).toEqual(['demo']);
  });

  it('forgets a removed unit: its pod watches end and its objects no longer report', () => {
    const w = new World();
    const d = target(DEPLOYMENTS, 'web');
    w.objects.set(d.key, deployment('web'));
    w.tracker.follow('u', 'c1', [d]);
    expect(w.acquired).toEqual(['demo']);
    w.tracker.forget('u');
    expect(w.released).toEqual(['demo']);
    expect(w.tracker.health('u')).toBeUndefined();
    w.tracker.objectEvent(d.key, 'changed');
    w.drain();
    expect(w.tracker.health('u')).toBeUndefined();
  });

  it('carries health over a re-sync of the same commit: no news, same times, our own write recomputed', async () => {
    const w = new World();
    const a = target(WIDGETS, 'a');
    const b = target(WIDGETS, 'b');
    w.objects.set(a.key, ready('a'));
    w.objects.set(b.key, ready('b'));
    const heard: HealthReport[] = [];
    w.tracker.onHealthChange((r) => heard.push(r));
    w.tracker.follow('u', 'c1', [a, b]);
    const first = await w.tracker.waitHealth('u', { timeoutMs: 60_000, pruneTimeoutMs: 60_000 });
    w.now += 60_000;
    w.tracker.follow('u', 'c1', [a, b]);
    expect(heard).toHaveLength(1);
    expect(w.tracker.health('u')).toMatchObject({ result: 'healthy', settledAt: first.settledAt });

    // The sync wrote b (the cache holds the write's response, no event): b is judged again.
    w.objects.set(b.key, { ...notReady('b'), metadata: { ...notReady('b').metadata, resourceVersion: '2' } });
    w.tracker.follow('u', 'c1', [a, b]);
    expect(w.tracker.health('u')?.result).toBe('progressing');
    expect(heard.map((r) => r.result)).toEqual(['healthy', 'progressing']);
  });

  it('waits again after a re-sync of a commit that timed out, without telling the same news twice', async () => {
    const w = new World();
    const a = target(WIDGETS, 'a');
    w.objects.set(a.key, notReady('a'));
    const heard: HealthReport[] = [];
    w.tracker.onHealthChange((r) => heard.push(r));
    w.tracker.follow('u', 'c1', [a]);
    const first = w.tracker.waitHealth('u', { timeoutMs: 1_000, pruneTimeoutMs: 1_000 });
    w.advance(1_000);
    await expect(first).resolves.toMatchObject({ result: 'timed_out' });

    w.tracker.follow('u', 'c1', [a]); // the periodic re-sync, nothing changed
    const second = w.tracker.waitHealth('u', { timeoutMs: 1_000, pruneTimeoutMs: 1_000 });
    w.advance(1_000);
    await expect(second).resolves.toMatchObject({ result: 'timed_out' });
    expect(heard.map((r) => r.result)).toEqual(['progressing', 'timed_out']);
  });

  it('whenReady resolves once the named objects are current or failed, or at the deadline', async () => {
    const w = new World();
    const a = target(WIDGETS, 'a');
    w.objects.set(a.key, notReady('a'));
    w.tracker.follow('u', 'c1', [a]);
    let done = false;
    const wait = w.tracker.whenReady('u', [a.key], w.now + 5_000).then(() => (done = true));
    w.set(a, ready('a'));
    w.drain();
    await wait;
    expect(done).toBe(true);
    expect(w.tracker.stateOf('u', a.key)?.state).toBe('current');

    w.set(a, notReady('a'));
    w.drain();
    const late = w.tracker.whenReady('u', [a.key], w.now + 5_000);
    w.advance(5_000);
    await late;
    expect(w.tracker.stateOf('u', a.key)?.state).toBe('in_progress');
  });
});

describe('rankOf and selects', () => {
  it.each([
    ['failed', false, 0],
    ['in_progress', false, 1],
    ['not_found', false, 1],
    ['current', false, 2],
    ['terminating', true, 1],
    ['not_found', true, 2],
  ] as const)('%s (pruned %s) ranks %d', (state, pruned, rank) => {
    expect(rankOf(state, pruned)).toBe(rank);
  });

  it('matches labels as matchLabels does', () => {
    expect(selects({ app: 'web' }, { app: 'web', tier: 'x' })).toBe(true);
    expect(selects({ app: 'web' }, { app: 'api' })).toBe(false);
  });
});
