/**
 * The apply stage and the watch cache against the real API server: a patch planned against a
 * stale live object fails its resourceVersion `test`, is re-read, re-planned and retried; write
 * responses win in the cache; changes by others arrive as events, our own writes do not.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { KubeClient } from '../../src/agent/kube/client.js';
import { WatchCache, type CacheEvent } from '../../src/agent/kube/cache.js';
import { OpenApi } from '../../src/agent/kube/openapi.js';
import { silentLogger } from '../../src/common/logger.js';
import { applyObject, type ApplyContext, type ApplyItem } from '../../src/agent/reconcile/apply.js';
import { KnownNormal } from '../../src/agent/reconcile/known-normal.js';
import { INVENTORY_LABEL, OWNING_INVENTORY_ANNOTATION } from '../../src/agent/reconcile/labels.js';
import type { KubeObject, ResourceInfo } from '../../src/agent/kube/types.js';
import { jsonPatch, kubeRequest, testAuditLogPath, testKubeConfig, waitFor } from '../harness/kube.js';
import { describeWrite, syncAuditLog, writeRequests } from '../harness/audit.js';
import { useNamespace } from '../harness/jest-kube.js';

const kc = testKubeConfig();
const CONFIGMAPS: ResourceInfo = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};
let client: KubeClient;
let caches: WatchCache;
let ctx: ApplyContext;

beforeAll(async () => {
  client = await KubeClient.create(kc);
  caches = new WatchCache(client, INVENTORY_LABEL);
  ctx = {
    client,
    caches,
    openapi: new OpenApi(client),
    known: await KnownNormal.open(),
    inventoryId: 'test/apply',
    inventoryPolicy: 'must_match',
    log: silentLogger(),
  };
});
afterAll(() => {
  caches.close();
  client.close();
});

function item(ns: string, data: Record<string, string>): ApplyItem {
  const object: KubeObject = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'cm',
      namespace: ns,
      labels: { [INVENTORY_LABEL]: 'apply' },
      annotations: { [OWNING_INVENTORY_ANNOTATION]: 'test/apply' },
    },
    data,
  };
  return {
    resolved: {
      object,
      source: { file: 'cm.yaml', line: 1 },
      id: `ConfigMap/${ns}/cm`,
      key: `/ConfigMap/${ns}/cm`,
      resource: CONFIGMAPS,
    },
    desired: object,
  };
}

describe('apply against a stale cache', () => {
  const ns = useNamespace('apply');

  it('retries a patch whose resourceVersion test failed and keeps the other writer’s change', async () => {
    expect((await applyObject(ctx, item(ns.name, { a: '1' }))).action).toBe('created');
    const cache = await caches.for(CONFIGMAPS);
    const stale = cache.get(ns.name, 'cm')!;

    // Someone else changes the object; wait until the watch has delivered it.
    const other = await jsonPatch(
      kc,
      `/api/v1/namespaces/${ns.name}/configmaps/cm`,
      [{ op: 'add', path: '/data/other', value: 'x' }],
      'someone',
    );
    expect(other.status).toBe(200);
    const otherRv = (other.body as KubeObject).metadata.resourceVersion;
    await waitFor(() => cache.get(ns.name, 'cm')?.metadata.resourceVersion === otherRv, 5_000, 'watch event');

    // Make the cache stale again, as if our view lagged behind the other writer.
    cache.upsert(stale);
    expect(cache.get(ns.name, 'cm')?.metadata.resourceVersion).toBe(stale.metadata.resourceVersion);

    const since = Date.now();
    const change = await applyObject(ctx, item(ns.name, { a: '1', b: '2' }));
    expect(change.action).toBe('configured');
    const live = (await kubeRequest(kc, 'GET', `/api/v1/namespaces/${ns.name}/configmaps/cm`)).body as KubeObject;
    expect(live.data).toEqual({ a: '1', b: '2', other: 'x' });
    const writes = writeRequests(await syncAuditLog(kc, testAuditLogPath()), {
      sinceMs: since,
      namespace: ns.name,
      excludeControllers: true,
    }).map(describeWrite);
    // The patch planned against the stale object fails its test (422); the re-planned one succeeds.
    expect(writes).toEqual([`patch configmaps ${ns.name}/cm 422`, `patch configmaps ${ns.name}/cm 200`]);
  });

  it('tells listeners about changes by others but not about its own writes', async () => {
    const events: CacheEvent[] = [];
    const cache = await caches.for(CONFIGMAPS);
    const off = cache.on((e) => {
      if (e.object.metadata.namespace === ns.name) events.push(e);
    });
    try {
      expect((await applyObject(ctx, item(ns.name, { a: '1' }))).action).toBe('created');
      expect((await applyObject(ctx, item(ns.name, { a: '2' }))).action).toBe('configured');
      await jsonPatch(
        kc,
        `/api/v1/namespaces/${ns.name}/configmaps/cm`,
        [{ op: 'replace', path: '/data/a', value: 'manual' }],
        'someone',
      );
      await waitFor(() => events.length > 0 || undefined, 5_000, 'change event');
      await kubeRequest(kc, 'DELETE', `/api/v1/namespaces/${ns.name}/configmaps/cm`);
      await waitFor(() => events.length > 1 || undefined, 5_000, 'delete event');
      expect(events.map((e) => [e.type, (e.object.data as Record<string, string> | undefined)?.a])).toEqual([
        ['changed', 'manual'],
        ['deleted', 'manual'],
      ]);
    } finally {
      off();
    }
  });
});
