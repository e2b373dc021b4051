/**
 * Health on the real control plane (no node, so no pods ever run): the engine follows what a sync
 * applied and pruned from its watch caches. The test acts as a tiny controller: it writes the
 * conditions of a custom resource (Widget) and removes a finalizer; ConfigMaps are current once
 * they exist; a Deployment never gets Ready pods here, so it stays in progress (timed_out).
 *
 * Widgets have no status subresource on purpose: their first status (Reconciling) comes from
 * Git, so a Widget is in progress from its creation (a status subresource would drop it on
 * create and the object would be current at once, before the test's controller could act); the
 * controller then writes `status` with a field manager of its own, as a controller without a
 * status subresource does.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { stringify } from 'yaml';
import { Engine, type EngineParts, type SyncUnit } from '../../src/agent/reconcile/engine.js';
import { openEngineParts } from '../../src/agent/commands/engine-parts.js';
import { KubeClient } from '../../src/agent/kube/client.js';
import type { ManifestFile, ManifestProjectConfig } from '../../src/protocol/messages.js';
import type { ChangeSet } from '../../src/agent/reconcile/types.js';
import type { KubeObject } from '../../src/agent/kube/types.js';
import type { HealthReport } from '../../src/agent/health/types.js';
import { ProblemCode } from '../../src/protocol/problems.js';
import { jsonPatch, kubeRequest, testKubeConfig, waitFor } from '../harness/kube.js';
import { useNamespace } from '../harness/jest-kube.js';
import { appDeployment, testProjectConfig, widgetCrd } from './objects.js';

const kc = testKubeConfig();
const group = `health${Date.now().toString(36)}.gitops.test`;
const crdName = `widgets.${group}`;
let client: KubeClient;
let parts: EngineParts;
let engine: Engine;

const LONG = { timeoutMs: 120_000, pruneTimeoutMs: 120_000 };

beforeAll(async () => {
  const crd = widgetCrd(group, {
    type: 'object',
    properties: {
      spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
      status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
    },
  });
  const res = await kubeRequest(kc, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
  expect(res.status).toBe(201);
  await waitFor(
    async () => (await kubeRequest(kc, 'GET', `/apis/${group}/v1`)).status === 200,
    60_000,
    'the Widget kind to be served',
  );
  client = await KubeClient.create(kc);
  parts = await openEngineParts(client);
  engine = Engine.create(parts);
}, 90_000);

afterAll(async () => {
  engine?.close();
  client?.close();
  await kubeRequest(kc, 'DELETE', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crdName}`);
});

interface Condition {
  type: string;
  status: 'True' | 'False';
  reason: string;
  message: string;
}

const reconciling: Condition[] = [
  { type: 'Reconciling', status: 'True', reason: 'Working', message: 'the test controller is working' },
  { type: 'Ready', status: 'False', reason: 'Working', message: 'not yet' },
];
const readyNow: Condition[] = [{ type: 'Ready', status: 'True', reason: 'Done', message: 'all set' }];
const stalledNow: Condition[] = [
  { type: 'Stalled', status: 'True', reason: 'Broken', message: 'the widget cannot be built' },
  { type: 'Ready', status: 'False', reason: 'Broken', message: 'the widget cannot be built' },
];

function widget(name: string, conditions: Condition[], annotations: Record<string, string> = {}): KubeObject {
  return {
    apiVersion: `${group}/v1`,
    kind: 'Widget',
    metadata: { name, annotations },
    spec: { size: 1 },
    status: { conditions },
  };
}

function configMap(name: string, metadata: Record<string, unknown> = {}): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, ...metadata }, data: { a: '1' } };
}

function yamlFile(path: string, ...objects: unknown[]): ManifestFile {
  return { path, content: objects.map((o) => stringify(o)).join('---\n') };
}

function unit(
  ns: string,
  objects: unknown[],
  commit: string,
  overrides: Partial<ManifestProjectConfig> = {},
): SyncUnit {
  return {
    name: `inv-${ns}`,
    namespace: ns,
    files: [yamlFile('all.yaml', ...objects)],
    config: testProjectConfig({ defaultNamespace: ns, ...overrides }),
    commit,
  };
}

/** The test's controller: writes a Widget's conditions, as its controller would. */
async function setConditions(ns: string, name: string, conditions: Condition[]): Promise<void> {
  const res = await jsonPatch(
    kc,
    `/apis/${group}/v1/namespaces/${ns}/widgets/${name}`,
    [{ op: 'replace', path: '/status', value: { conditions } }],
    'widget-controller',
  );
  expect(res.status).toBe(200);
}

function actions(set: ChangeSet): Record<string, string> {
  return Object.fromEntries(set.changes.map((c) => [c.id, c.action]));
}

function states(report: HealthReport | undefined): string[] {
  return (report?.objects ?? []).map((o) => `${o.id}=${o.state}${o.pruned ? ' (pruned)' : ''}`);
}

async function syncOk(u: SyncUnit): Promise<ChangeSet> {
  const set = await engine.sync(u);
  expect(set.errors).toEqual([]);
  expect(set.changes.filter((c) => c.action === 'failed')).toEqual([]);
  return set;
}

describe('engine health', () => {
  const ns = useNamespace('health');

  it('waits until a custom resource becomes Ready, then reports healthy', async () => {
    const u = unit(ns.name, [widget('a', reconciling), configMap('cfg')], 'c1');
    await syncOk(u);
    const wait = engine.waitHealth(u.name, LONG);
    expect(engine.health(u.name)).toMatchObject({ result: 'progressing', commit: 'c1' });
    expect(states(engine.health(u.name))).toEqual([
      `Widget/${ns.name}/a=in_progress`,
      `ConfigMap/${ns.name}/cfg=current`,
    ]);

    await setConditions(ns.name, 'a', readyNow);
    const report = await wait;
    expect(report).toMatchObject({ unit: u.name, commit: 'c1', result: 'healthy' });
    // Within a rank, apply order: ConfigMaps go before custom resources.
    expect(states(report)).toEqual([`ConfigMap/${ns.name}/cfg=current`, `Widget/${ns.name}/a=current`]);
    expect(report.waitedMs).toBeGreaterThanOrEqual(0);
    expect(report.settledAt).toBeLessThanOrEqual(Date.now());
  });

  it('reports degraded as soon as an object stalls, not at the timeout', async () => {
    const u = unit(ns.name, [widget('a', reconciling), widget('b', reconciling)], 'c1');
    await syncOk(u);
    const wait = engine.waitHealth(u.name, LONG);
    await setConditions(ns.name, 'b', stalledNow);
    const report = await wait;
    expect(report.result).toBe('degraded');
    expect(report.waitedMs).toBeLessThan(30_000);
    expect(report.objects[0]).toMatchObject({ id: `Widget/${ns.name}/b`, state: 'failed' });
    expect(report.objects[0].message).toMatch(/cannot be built/);
    expect(states(report)).toEqual([`Widget/${ns.name}/b=failed`, `Widget/${ns.name}/a=in_progress`]);
  });

  it('times out naming the object still in progress (a Deployment with no node to run on)', async () => {
    const u = unit(ns.name, [appDeployment('web'), configMap('cfg')], 'c1');
    await syncOk(u);
    const report = await engine.waitHealth(u.name, { timeoutMs: 2_000, pruneTimeoutMs: 2_000 });
    expect(report.result).toBe('timed_out');
    expect(report.waitedMs).toBeGreaterThanOrEqual(2_000);
    expect(report.waitedMs).toBeLessThan(30_000);
    expect(report.objects[0]).toMatchObject({ id: `Deployment/${ns.name}/web`, state: 'in_progress' });
    expect(states(report)).toEqual([`Deployment/${ns.name}/web=in_progress`, `ConfigMap/${ns.name}/cfg=current`]);
  });

  it('resolves at once with the report as it stands when the timeout is 0', async () => {
    const u = unit(ns.name, [widget('a', reconciling)], 'c1');
    await syncOk(u);
    const report = await engine.waitHealth(u.name, { timeoutMs: 0, pruneTimeoutMs: 0 });
    expect(report.result).toBe('progressing');
  });

  it('follows a pruned object until it is gone, terminating while a finalizer holds it', async () => {
    const held = configMap('old', { finalizers: ['gitops.test/hold'] });
    await syncOk(unit(ns.name, [configMap('keep'), held], 'c1'));
    const u = unit(ns.name, [configMap('keep')], 'c2');
    const set = await syncOk(u);
    expect(actions(set)).toEqual({
      [`ConfigMap/${ns.name}/keep`]: 'unchanged',
      [`ConfigMap/${ns.name}/old`]: 'pruned',
    });
    const wait = engine.waitHealth(u.name, LONG);
    await waitFor(
      () =>
        engine.health(u.name)?.objects.some((o) => o.id === `ConfigMap/${ns.name}/old` && o.state === 'terminating'),
      30_000,
      'the pruned ConfigMap to show as terminating',
    );
    expect(engine.health(u.name)?.result).toBe('progressing');

    // The test's controller lets go: the object goes, and the wait ends.
    const res = await jsonPatch(kc, `/api/v1/namespaces/${ns.name}/configmaps/old`, [
      { op: 'remove', path: '/metadata/finalizers' },
    ]);
    expect(res.status).toBe(200);
    const report = await wait;
    expect(report.result).toBe('healthy');
    expect(states(report)).toEqual([
      `ConfigMap/${ns.name}/keep=current`,
      `ConfigMap/${ns.name}/old=not_found (pruned)`,
    ]);
  });

  it('gives up on a pruned object at the prune timeout', async () => {
    await syncOk(unit(ns.name, [configMap('keep'), configMap('old', { finalizers: ['gitops.test/hold'] })], 'c1'));
    const u = unit(ns.name, [configMap('keep')], 'c2');
    await syncOk(u);
    const report = await engine.waitHealth(u.name, { timeoutMs: 120_000, pruneTimeoutMs: 1_500 });
    expect(report.result).toBe('timed_out');
    expect(report.objects[0]).toMatchObject({ id: `ConfigMap/${ns.name}/old`, state: 'terminating', pruned: true });
    await jsonPatch(kc, `/api/v1/namespaces/${ns.name}/configmaps/old`, [
      { op: 'remove', path: '/metadata/finalizers' },
    ]);
  });

  it('ends a wait with the progressing report when a newer sync supersedes it', async () => {
    const first = unit(ns.name, [widget('a', reconciling)], 'c1');
    await syncOk(first);
    const abort = new AbortController();
    const aborted = engine.waitHealth(first.name, { ...LONG, signal: abort.signal });
    const replaced = engine.waitHealth(first.name, LONG);
    abort.abort();
    await expect(aborted).resolves.toMatchObject({ result: 'progressing', commit: 'c1' });

    // The next commit's sync replaces what is followed; the wait that nobody aborted ends too.
    await syncOk(unit(ns.name, [widget('a', reconciling), configMap('cfg')], 'c2'));
    await expect(replaced).resolves.toMatchObject({ result: 'progressing', commit: 'c1' });
    expect(engine.health(first.name)?.commit).toBe('c2');
  });

  it('keeps following after the wait settled: a later failure changes the report exactly once', async () => {
    const u = unit(ns.name, [widget('a', readyNow)], 'c1');
    await syncOk(u);
    await expect(engine.waitHealth(u.name, LONG)).resolves.toMatchObject({ result: 'healthy' });
    const heard: HealthReport[] = [];
    const off = engine.onHealthChange((r) => {
      if (r.unit === u.name) heard.push(r);
    });
    try {
      await setConditions(ns.name, 'a', stalledNow);
      await waitFor(() => heard.length >= 1, 30_000, 'the degraded report');
      // Another event with the same state and reason is no news ...
      await setConditions(
        ns.name,
        'a',
        stalledNow.map((c) => ({ ...c, message: `${c.message}, still` })),
      );
      // ... and the next real change is: once it arrives, the event in between was seen and dropped.
      await setConditions(ns.name, 'a', readyNow);
      await waitFor(() => heard.length >= 2, 30_000, 'the healthy report');
      expect(heard.map((r) => r.result)).toEqual(['degraded', 'healthy']);
    } finally {
      off();
    }
  });
});

describe('engine pod watches', () => {
  const ns = useNamespace('pods');

  it('watches the pods of a namespace only while a workload there is followed', async () => {
    expect(parts.pods?.namespaces()).not.toContain(ns.name);
    await syncOk(unit(ns.name, [appDeployment('web'), configMap('cfg')], 'c1'));
    expect(parts.pods?.namespaces()).toContain(ns.name);
    // A commit without the Deployment: nothing in the namespace needs its pods any more.
    await syncOk(unit(ns.name, [configMap('cfg')], 'c2'));
    expect(parts.pods?.namespaces()).not.toContain(ns.name);
  });
});

describe('engine depends-on', () => {
  const ns = useNamespace('depends');

  const ref = (name: string, kind = 'Widget', g = group): string => `${g}/namespaces/${ns.name}/${kind}/${name}`;

  it('applies an object only after the object it depends on is current', async () => {
    const b = configMap('b', { annotations: { 'config.kubernetes.io/depends-on': ref('a') } });
    const u = unit(ns.name, [b, widget('a', reconciling)], 'c1');
    const syncing = engine.sync(u);
    await waitFor(
      async () => (await kubeRequest(kc, 'GET', `/apis/${group}/v1/namespaces/${ns.name}/widgets/a`)).status === 200,
      30_000,
      'Widget a to be applied',
    );
    // A is there and not Ready: B must not be. Once the controller marks A Ready, B follows.
    expect((await kubeRequest(kc, 'GET', `/api/v1/namespaces/${ns.name}/configmaps/b`)).status).toBe(404);
    const markedAt = Date.now();
    await setConditions(ns.name, 'a', readyNow);
    const set = await syncing;
    expect(set.errors).toEqual([]);
    expect(actions(set)).toEqual({ [`Widget/${ns.name}/a`]: 'created', [`ConfigMap/${ns.name}/b`]: 'created' });
    const live = (await kubeRequest(kc, 'GET', `/api/v1/namespaces/${ns.name}/configmaps/b`)).body as KubeObject;
    // creationTimestamp has second precision.
    expect(Date.parse(live.metadata.creationTimestamp!)).toBeGreaterThanOrEqual(Math.floor(markedAt / 1000) * 1000);
    await expect(engine.waitHealth(u.name, LONG)).resolves.toMatchObject({ result: 'healthy' });
  });

  it('skips a dependent whose dependency does not become current within reconcileTimeoutMs', async () => {
    const b = configMap('b', { annotations: { 'config.kubernetes.io/depends-on': ref('a') } });
    const set = await engine.sync(
      unit(ns.name, [b, widget('a', reconciling), configMap('free')], 'c1', { reconcileTimeoutMs: 1_500 }),
    );
    expect(set.errors).toEqual([]);
    expect(actions(set)).toEqual({
      [`Widget/${ns.name}/a`]: 'created',
      [`ConfigMap/${ns.name}/free`]: 'created',
      [`ConfigMap/${ns.name}/b`]: 'skipped',
    });
    const skipped = set.changes.find((c) => c.id === `ConfigMap/${ns.name}/b`);
    expect(skipped?.error?.code).toBe(ProblemCode.DEPENDENCY_NOT_READY);
    expect(skipped?.reason).toContain(`Widget/${ns.name}/a`);
    expect(skipped?.reason).toContain('in_progress');
    expect((await kubeRequest(kc, 'GET', `/api/v1/namespaces/${ns.name}/configmaps/b`)).status).toBe(404);

    // A ready later does not make the commit healthy: b is still not there (the next sync applies it).
    await setConditions(ns.name, 'a', readyNow);
    const report = await engine.waitHealth(`inv-${ns.name}`, { timeoutMs: 2_000, pruneTimeoutMs: 2_000 });
    expect(report.result).toBe('timed_out');
    expect(report.objects[0]).toMatchObject({ id: `ConfigMap/${ns.name}/b`, reason: 'DependencyNotReady' });
  });

  it('rejects a cycle naming both objects, and applies the rest', async () => {
    const a = configMap('a', { annotations: { 'config.kubernetes.io/depends-on': ref('b', 'ConfigMap', '') } });
    const b = configMap('b', { annotations: { 'config.kubernetes.io/depends-on': ref('a', 'ConfigMap', '') } });
    const set = await engine.sync(unit(ns.name, [a, b, configMap('free')], 'c1'));
    expect(set.errors).toEqual([]);
    expect(actions(set)).toEqual({
      [`ConfigMap/${ns.name}/a`]: 'failed',
      [`ConfigMap/${ns.name}/b`]: 'failed',
      [`ConfigMap/${ns.name}/free`]: 'created',
    });
    for (const id of ['a', 'b']) {
      const change = set.changes.find((c) => c.id === `ConfigMap/${ns.name}/${id}`);
      expect(change?.error?.code).toBe(ProblemCode.DEPENDS_ON_CYCLE);
      expect(change?.reason).toContain(`ConfigMap/${ns.name}/a`);
      expect(change?.reason).toContain(`ConfigMap/${ns.name}/b`);
    }
    expect((await kubeRequest(kc, 'GET', `/api/v1/namespaces/${ns.name}/configmaps/a`)).status).toBe(404);
  });

  it('rejects a reference to an object that is not in the commit, naming it', async () => {
    const a = configMap('a', { annotations: { 'config.kubernetes.io/depends-on': ref('nope', 'ConfigMap', '') } });
    const set = await engine.sync(unit(ns.name, [a, configMap('free')], 'c1'));
    expect(actions(set)).toEqual({ [`ConfigMap/${ns.name}/a`]: 'failed', [`ConfigMap/${ns.name}/free`]: 'created' });
    const change = set.changes.find((c) => c.id === `ConfigMap/${ns.name}/a`);
    expect(change?.error?.code).toBe(ProblemCode.DEPENDS_ON_UNKNOWN);
    expect(change?.reason).toContain(`/namespaces/${ns.name}/ConfigMap/nope`);
  });
});
