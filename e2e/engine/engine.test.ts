/**
 * The reconcile engine against the real API server (and controller-manager): write counts from the
 * audit log, normalised fields that must not look like drift, merge-by-key lists others extend,
 * CRDs with their custom resources, conflicts, prune ownership, and whole-commit validation.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { stringify } from 'yaml';
import type { Engine, SyncUnit } from '../../src/agent/reconcile/engine.js';
import { openEngine, type OwnedEngine } from '../../src/agent/commands/engine-parts.js';
import type { ManifestFile, ManifestProjectConfig } from '../../src/protocol/messages.js';
import type { ChangeSet } from '../../src/agent/reconcile/types.js';
import type { KubeObject } from '../../src/agent/kube/types.js';
import { jsonPatch, kubeRequest, testAuditLogPath, testKubeConfig, waitFor } from '../harness/kube.js';
import { syncAuditLog, writeRequests, describeWrite } from '../harness/audit.js';
import { useNamespace } from '../harness/jest-kube.js';
import { appDeployment, testProjectConfig, widgetCrd } from './objects.js';

const kc = testKubeConfig();
let owned: OwnedEngine;
let engine: Engine;

beforeAll(async () => {
  owned = await openEngine(kc);
  engine = owned.engine;
});
afterAll(() => owned.close());

const config = testProjectConfig;

function yamlFile(path: string, ...objects: unknown[]): ManifestFile {
  return { path, content: objects.map((o) => stringify(o)).join('---\n') };
}

function unit(ns: string, files: ManifestFile[], overrides: Partial<ManifestProjectConfig> = {}): SyncUnit {
  return { name: `inv-${ns}`, namespace: ns, files, config: config({ defaultNamespace: ns, ...overrides }) };
}

function actions(set: ChangeSet): Record<string, string> {
  return Object.fromEntries(set.changes.map((c) => [c.id, c.action]));
}

async function writesSince(sinceMs: number, ns: string): Promise<string[]> {
  const events = await syncAuditLog(kc, testAuditLogPath());
  return writeRequests(events, { sinceMs, namespace: ns, excludeControllers: true }).map(describeWrite);
}

async function get(path: string): Promise<KubeObject> {
  const res = await kubeRequest(kc, 'GET', path);
  expect(res.status).toBe(200);
  return res.body as KubeObject;
}

const deployment = appDeployment;

describe('engine sync', () => {
  const ns = useNamespace('engine');

  it('applies a directory and then re-applies it with zero write requests', async () => {
    const files = [
      yamlFile('app.yaml', deployment('web'), {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'web' },
        spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] },
      }),
      yamlFile(
        'config.yaml',
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg' }, data: { a: '1' } },
        {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'creds' },
          stringData: { password: 's3cret' },
        },
      ),
    ];
    const first = await engine.sync(unit(ns.name, files));
    expect(first.errors).toEqual([]);
    expect(actions(first)).toEqual({
      [`Deployment/${ns.name}/web`]: 'created',
      [`Service/${ns.name}/web`]: 'created',
      [`ConfigMap/${ns.name}/cfg`]: 'created',
      [`Secret/${ns.name}/creds`]: 'created',
    });
    // Let controllers write status so the second sync sees a "busy" live object.
    await waitFor(
      async () =>
        ((await get(`/apis/apps/v1/namespaces/${ns.name}/deployments/web`)).status as { observedGeneration?: number })
          ?.observedGeneration === 1,
      15_000,
      'deployment status',
    );

    const since = Date.now();
    const second = await engine.sync(unit(ns.name, files));
    expect(second.changes.every((c) => c.action === 'unchanged')).toBe(true);
    expect(await writesSince(since, ns.name)).toEqual([]);

    // A fresh engine (no learnt state, as a second CLI run) also writes nothing.
    const fresh = await openEngine(kc);
    try {
      const since2 = Date.now();
      const third = await fresh.engine.sync(unit(ns.name, files));
      expect(third.changes.map((c) => c.action)).toEqual(['unchanged', 'unchanged', 'unchanged', 'unchanged']);
      expect(await writesSince(since2, ns.name)).toEqual([]);
    } finally {
      fresh.close();
    }
  });

  it('removes a field that was removed from the files', async () => {
    const cm = (data: Record<string, string>) =>
      yamlFile('cm.yaml', {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'cfg', labels: { team: 'a' } },
        data,
      });
    await engine.sync(unit(ns.name, [cm({ a: '1', b: '2' })]));
    const set = await engine.sync(unit(ns.name, [cm({ a: '1' })]));
    expect(actions(set)).toEqual({ [`ConfigMap/${ns.name}/cfg`]: 'configured' });
    const live = await get(`/api/v1/namespaces/${ns.name}/configmaps/cfg`);
    expect(live.data).toEqual({ a: '1' });
    expect(live.metadata.labels?.team).toBe('a');
  });

  it('leaves a drift.ignore field alone on a re-sync while reverting another edited field', async () => {
    const files = [
      yamlFile('d.yaml', deployment('scaled')),
      yamlFile('cm.yaml', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg' }, data: { a: '1' } }),
    ];
    const ignoring: SyncUnit = {
      ...unit(ns.name, files),
      driftIgnore: [{ group: 'apps', kind: 'Deployment', paths: ['/spec/replicas'] }],
    };
    await engine.sync(ignoring);
    // Someone (an autoscaler) scales the Deployment and edits its image; someone else edits the ConfigMap.
    await jsonPatch(
      kc,
      `/apis/apps/v1/namespaces/${ns.name}/deployments/scaled`,
      [
        { op: 'replace', path: '/spec/replicas', value: 3 },
        { op: 'replace', path: '/spec/template/spec/containers/0/image', value: 'nginx:edited' },
      ],
      'autoscaler',
    );
    await jsonPatch(
      kc,
      `/api/v1/namespaces/${ns.name}/configmaps/cfg`,
      [{ op: 'replace', path: '/data/a', value: 'edited' }],
      'someone',
    );
    await waitFor(
      async () =>
        (engine.planOne(ignoring.name, `apps/Deployment/${ns.name}/scaled`, { ignore: ['/spec/replicas'] })?.action ??
          'none') === 'patch',
      5_000,
      'edit seen by the watch',
    );
    await waitFor(
      async () => (engine.planOne(ignoring.name, `/ConfigMap/${ns.name}/cfg`)?.action ?? 'none') === 'patch',
      5_000,
      'ConfigMap edit seen by the watch',
    );

    const set = await engine.sync(ignoring);
    expect(actions(set)).toEqual({
      [`Deployment/${ns.name}/scaled`]: 'configured',
      [`ConfigMap/${ns.name}/cfg`]: 'configured',
    });
    const live = await get(`/apis/apps/v1/namespaces/${ns.name}/deployments/scaled`);
    const spec = live.spec as { replicas: number; template: { spec: { containers: Array<{ image: string }> } } };
    expect(spec.replicas).toBe(3);
    expect(spec.template.spec.containers[0].image).toBe('nginx:1.27');
    expect((await get(`/api/v1/namespaces/${ns.name}/configmaps/cfg`)).data).toEqual({ a: '1' });

    // Without the rule the same re-sync reverts replicas too.
    const reverted = await engine.sync(unit(ns.name, files));
    expect(actions(reverted)[`Deployment/${ns.name}/scaled`]).toBe('configured');
    expect((await get(`/apis/apps/v1/namespaces/${ns.name}/deployments/scaled`)).spec).toMatchObject({ replicas: 1 });
  });

  it('keeps a container another field manager added', async () => {
    const files = [yamlFile('d.yaml', deployment('sidecar'))];
    await engine.sync(unit(ns.name, files));
    const path = `/apis/apps/v1/namespaces/${ns.name}/deployments/sidecar`;
    const res = await jsonPatch(
      kc,
      path,
      [{ op: 'add', path: '/spec/template/spec/containers/-', value: { name: 'proxy', image: 'envoy:1' } }],
      'injector',
    );
    expect(res.status).toBe(200);
    await waitFor(
      () => engine.planOne(`inv-${ns.name}`, `apps/Deployment/${ns.name}/sidecar`)?.action === 'none' || undefined,
      5_000,
      'cache to see the sidecar',
    ).catch(() => undefined);
    const set = await engine.sync(unit(ns.name, files));
    expect(actions(set)).toEqual({ [`Deployment/${ns.name}/sidecar`]: 'unchanged' });
    const live = await get(path);
    const containers = (
      live.spec as { template: { spec: { containers: Array<{ name: string }> } } }
    ).template.spec.containers.map((c) => c.name);
    expect(containers).toEqual(['app', 'proxy']);
  });

  it('applies a CRD and its custom resource in one run', async () => {
    const group = `${ns.name}.example.com`;
    const crd = widgetCrd(group, {
      type: 'object',
      properties: { spec: { type: 'object', properties: { size: { type: 'integer' } } } },
    });
    const cr = { apiVersion: `${group}/v1`, kind: 'Widget', metadata: { name: 'w1' }, spec: { size: 3 } };
    const set = await engine.sync(
      unit(ns.name, [yamlFile('crd.yaml', crd), yamlFile('cr.yaml', cr)], { prune: false }),
    );
    expect(set.errors).toEqual([]);
    expect(set.changes.filter((c) => c.action === 'failed').map((c) => c.reason)).toEqual([]);
    expect(actions(set)).toEqual({
      [`CustomResourceDefinition/widgets.${group}`]: 'created',
      [`Widget/${ns.name}/w1`]: 'created',
    });
    const live = await get(`/apis/${group}/v1/namespaces/${ns.name}/widgets/w1`);
    expect(live.spec).toEqual({ size: 3 });
    await kubeRequest(kc, 'DELETE', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${group}`);
  });

  it('fails an immutable-field change clearly, and recreates the object when it opts in', async () => {
    const dep = (app: string, annotations: Record<string, string> = {}) => {
      const d = deployment('imm') as ReturnType<typeof deployment> & {
        metadata: { annotations?: Record<string, string> };
      };
      d.metadata.annotations = annotations;
      d.spec.selector = { matchLabels: { app } };
      d.spec.template.metadata.labels = { app };
      return yamlFile('d.yaml', d);
    };
    await engine.sync(unit(ns.name, [dep('one')]));
    const failed = await engine.sync(unit(ns.name, [dep('two')]));
    const change = failed.changes.find((c) => c.id === `Deployment/${ns.name}/imm`);
    expect(change?.action).toBe('failed');
    expect(change?.reason).toMatch(/^Deployment\/.*\/imm: .*immutable/);
    const before = await get(`/apis/apps/v1/namespaces/${ns.name}/deployments/imm`);

    const recreated = await engine.sync(unit(ns.name, [dep('two', { 'gitops.dev/recreate': 'on-immutable-change' })]));
    expect(actions(recreated)).toEqual({ [`Deployment/${ns.name}/imm`]: 'created' });
    const after = await get(`/apis/apps/v1/namespaces/${ns.name}/deployments/imm`);
    expect(after.metadata.uid).not.toBe(before.metadata.uid);
    expect((after.spec as { selector: unknown }).selector).toEqual({ matchLabels: { app: 'two' } });
  });

  it('prunes only what it owns and keeps opted-out objects', async () => {
    const cm = (name: string, annotations: Record<string, string> = {}) => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, annotations },
      data: { k: name },
    });
    await engine.sync(
      unit(ns.name, [yamlFile('all.yaml', cm('keep'), cm('drop'), cm('optout', { 'gitops.dev/prune': 'disabled' }))]),
    );
    // Someone else's object in the same namespace.
    await kubeRequest(kc, 'POST', `/api/v1/namespaces/${ns.name}/configmaps`, cm('foreign'));
    // A dry run (diff --prune) says the same as the real prune: the opted-out object is kept.
    const preview = await engine.diff(unit(ns.name, [yamlFile('all.yaml', cm('keep'))]));
    expect(Object.fromEntries(preview.changes.map((c) => [c.id, c.action]))).toEqual({
      [`ConfigMap/${ns.name}/keep`]: 'unchanged',
      [`ConfigMap/${ns.name}/drop`]: 'pruned',
      [`ConfigMap/${ns.name}/optout`]: 'skipped',
    });
    expect((await kubeRequest(kc, 'GET', `/api/v1/namespaces/${ns.name}/configmaps/drop`)).status).toBe(200);
    const set = await engine.sync(unit(ns.name, [yamlFile('all.yaml', cm('keep'))]));
    expect(actions(set)).toEqual({
      [`ConfigMap/${ns.name}/keep`]: 'unchanged',
      [`ConfigMap/${ns.name}/drop`]: 'pruned',
      [`ConfigMap/${ns.name}/optout`]: 'skipped',
    });
    expect((await kubeRequest(kc, 'GET', `/api/v1/namespaces/${ns.name}/configmaps/drop`)).status).toBe(404);
    expect((await kubeRequest(kc, 'GET', `/api/v1/namespaces/${ns.name}/configmaps/optout`)).status).toBe(200);
    expect((await kubeRequest(kc, 'GET', `/api/v1/namespaces/${ns.name}/configmaps/foreign`)).status).toBe(200);
  });

  it('applies nothing from a set with a bad YAML file and names file and line', async () => {
    const files = [
      yamlFile('good.yaml', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'good' } }),
      { path: 'bad.yaml', content: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n' },
    ];
    const since = Date.now();
    const set = await engine.sync(unit(ns.name, files));
    expect(set.errors.length).toBeGreaterThan(0);
    expect(set.errors[0].file).toBe('bad.yaml');
    expect(set.errors[0].line).toBeGreaterThan(0);
    expect(await writesSince(since, ns.name)).toEqual([]);
  });

  it('applies nothing when the API server rejects one object in the dry run, and says which', async () => {
    const files = [
      yamlFile('good.yaml', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'good' }, data: { a: '1' } }),
      yamlFile('bad.yaml', {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'bad' },
        spec: { ports: [{ port: 700000 }] },
      }),
    ];
    const since = Date.now();
    const set = await engine.sync(unit(ns.name, files, { dryRunStrategy: 'server' }));
    const bad = set.changes.find((c) => c.id === `Service/${ns.name}/bad`);
    expect(bad?.action).toBe('failed');
    expect(bad?.reason).toMatch(/port/);
    expect(bad?.error?.file).toBe('bad.yaml');
    expect(set.changes.find((c) => c.id === `ConfigMap/${ns.name}/good`)?.action).toBe('skipped');
    expect(await writesSince(since, ns.name)).toEqual([]);
  });

  it('diff reports the patch with Secret values masked and writes nothing', async () => {
    const secret = (v: string) =>
      yamlFile('s.yaml', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' }, stringData: { password: v } });
    await engine.sync(unit(ns.name, [secret('old-value')]));
    const since = Date.now();
    const { changes } = await engine.diff(unit(ns.name, [secret('new-value')]));
    expect(changes.map((c) => c.action)).toEqual(['configured']);
    expect(JSON.stringify(changes)).not.toContain('new-value');
    expect(JSON.stringify(changes)).not.toContain(Buffer.from('new-value').toString('base64'));
    expect(await writesSince(since, ns.name)).toEqual([]);
  });
});
