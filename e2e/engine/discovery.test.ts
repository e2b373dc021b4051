/**
 * Discovery and prune against the real API server: the preferred version of every group/kind is
 * the server's own (aggregated and legacy discovery alike), and prune deletes through the version
 * the inventory recorded, not whichever version discovery happens to prefer.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { stringify } from 'yaml';
import { KubeClient } from '../../src/agent/kube/client.js';
import { Discovery } from '../../src/agent/kube/discovery.js';
import type { Engine } from '../../src/agent/reconcile/engine.js';
import type { SyncUnit } from '../../src/agent/reconcile/types.js';
import { openEngine, type OwnedEngine } from '../../src/agent/commands/engine-parts.js';
import { kubeRequest, testAuditLogPath, testKubeConfig } from '../harness/kube.js';
import { syncAuditLog, writeRequests } from '../harness/audit.js';
import { useNamespace } from '../harness/jest-kube.js';
import { testProjectConfig, widgetCrd } from './objects.js';

const kc = testKubeConfig();
let owned: OwnedEngine;
let engine: Engine;
let client: KubeClient;

beforeAll(async () => {
  owned = await openEngine(kc);
  engine = owned.engine;
  client = await KubeClient.create(kc);
});
afterAll(() => {
  owned.close();
  client.close();
});

interface GroupList {
  groups: Array<{ name: string; preferredVersion: { version: string }; versions: Array<{ version: string }> }>;
}

describe('discovery', () => {
  it.each([
    ['aggregated', true],
    ['legacy', false],
  ])("%s: every group/kind's preferred version is the server's preferredVersion", async (_mode, aggregated) => {
    const discovery = new Discovery(client, { aggregated });
    await discovery.ensureLoaded();
    const apis = (await kubeRequest(kc, 'GET', '/apis')).body as GroupList;
    const multi = apis.groups.filter((g) => g.versions.length > 1);
    expect(multi.length).toBeGreaterThan(0); // autoscaling (v2, v1) at least: the case that matters
    let checked = 0;
    for (const g of apis.groups) {
      const preferred = g.preferredVersion.version;
      const list = (await kubeRequest(kc, 'GET', `/apis/${g.name}/${preferred}`)).body as {
        resources: Array<{ name: string; kind: string }>;
      };
      for (const r of list.resources.filter((x) => !x.name.includes('/'))) {
        expect(`${g.name} ${r.kind} ${discovery.preferred(g.name, r.kind)?.version}`).toBe(
          `${g.name} ${r.kind} ${preferred}`,
        );
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(20);
    expect(discovery.preferred('autoscaling', 'HorizontalPodAutoscaler')?.version).toBe('v2');
    expect(discovery.peek('autoscaling', 'v1', 'HorizontalPodAutoscaler')?.plural).toBe('horizontalpodautoscalers');
  });
});

describe('prune', () => {
  const ns = useNamespace('prune-version');

  it('deletes through the version the inventory recorded, not the preferred one', async () => {
    const group = `${ns.name}.example.com`;
    // v1 is the storage and preferred version; v1beta1 is still served.
    const crd = widgetCrd(
      group,
      { type: 'object', properties: { spec: { type: 'object', properties: { size: { type: 'integer' } } } } },
      ['v1', 'v1beta1'],
    );
    const unit = (name: string, objects: unknown[], prune: boolean): SyncUnit => ({
      name,
      namespace: ns.name,
      files: [{ path: 'all.yaml', content: objects.map((o) => stringify(o)).join('---\n') }],
      config: testProjectConfig({ defaultNamespace: ns.name, prune }),
    });
    try {
      const crdSet = await engine.sync(unit('crd', [crd], false));
      expect(crdSet.changes.map((c) => c.action)).toEqual(['created']);
      const widget = { apiVersion: `${group}/v1beta1`, kind: 'Widget', metadata: { name: 'w1' }, spec: { size: 1 } };
      const applied = await engine.sync(unit('widgets', [widget], true));
      expect(applied.changes.map((c) => `${c.id} ${c.action}`)).toEqual([`Widget/${ns.name}/w1 created`]);

      const since = Date.now();
      const pruned = await engine.sync(unit('widgets', [], true));
      expect(pruned.changes.map((c) => `${c.id} ${c.action}`)).toEqual([`Widget/${ns.name}/w1 pruned`]);
      const deletes = writeRequests(await syncAuditLog(kc, testAuditLogPath()), {
        sinceMs: since,
        namespace: ns.name,
      }).filter((e) => e.verb === 'delete' && e.objectRef?.resource === 'widgets');
      expect(deletes.map((e) => e.objectRef?.apiVersion)).toEqual(['v1beta1']);
    } finally {
      await kubeRequest(kc, 'DELETE', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${group}`);
    }
  });
});
