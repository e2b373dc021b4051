/**
 * What makes a SIGKILL mid-apply safe (see agent-crash.test.ts for the whole-product fault): the
 * engine lists objects new to a unit in its inventory ConfigMap before it creates any of them, so
 * whatever an interrupted apply created is still owned and prunable. Checked in the audit log of
 * the real API server. And the one case where it must not write first: a commit that creates its
 * own default namespace (writing the inventory would create that namespace unowned, and the
 * commit's Namespace object would then fail the must_match policy).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { stringify } from 'yaml';
import { randomBytes } from 'node:crypto';
import type { Engine, SyncUnit } from '../../src/agent/reconcile/engine.js';
import { openEngine, type OwnedEngine } from '../../src/agent/commands/engine-parts.js';
import { inventoryName } from '../../src/agent/reconcile/inventory.js';
import { kubeRequest, testAuditLogPath, testKubeConfig } from '../harness/kube.js';
import { describeWrite, syncAuditLog, writeRequests } from '../harness/audit.js';
import { useNamespace } from '../harness/jest-kube.js';
import { testProjectConfig } from '../engine/objects.js';

const kc = testKubeConfig();
let owned: OwnedEngine;
let engine: Engine;

beforeAll(async () => {
  owned = await openEngine(kc);
  engine = owned.engine;
});
afterAll(() => owned.close());

function unit(ns: string, objects: unknown[]): SyncUnit {
  const config = testProjectConfig({ defaultNamespace: ns });
  return {
    name: `inv-${ns}`,
    namespace: ns,
    files: [{ path: 'all.yaml', content: objects.map((o) => stringify(o)).join('---\n') }],
    config,
  };
}

const cm = (name: string): unknown => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { a: '1' } });

describe('inventory before apply', () => {
  const ns = useNamespace('inv-first');

  it('writes the new objects into the inventory before it creates them, on the first commit and on one that adds objects', async () => {
    const inv = inventoryName(`inv-${ns.name}`);
    const writes = async (since: number): Promise<string[]> =>
      writeRequests(await syncAuditLog(kc, testAuditLogPath()), {
        sinceMs: since,
        namespace: ns.name,
        excludeControllers: true,
      }).map(describeWrite);

    let since = Date.now();
    expect((await engine.sync(unit(ns.name, [cm('a'), cm('b')]))).errors).toEqual([]);
    let seen = await writes(since);
    expect(seen[0]).toBe(`create configmaps ${ns.name}/${inv} 201`);
    expect(seen.slice(1, 3).sort()).toEqual([
      `create configmaps ${ns.name}/a 201`,
      `create configmaps ${ns.name}/b 201`,
    ]);

    since = Date.now();
    expect((await engine.sync(unit(ns.name, [cm('a'), cm('b'), cm('c')]))).errors).toEqual([]);
    seen = await writes(since);
    expect(seen.indexOf(`patch configmaps ${ns.name}/${inv} 200`)).toBe(0);
    expect(seen).toContain(`create configmaps ${ns.name}/c 201`);

    // An unchanged re-sync still writes nothing at all.
    since = Date.now();
    await engine.sync(unit(ns.name, [cm('a'), cm('b'), cm('c')]));
    expect(await writes(since)).toEqual([]);
  });

  it('applies a commit that creates its own default namespace under must_match', async () => {
    const own = `inv-own-${randomBytes(4).toString('hex')}`;
    try {
      const set = await engine.sync(
        unit(own, [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: own } }, cm('x')]),
      );
      expect(set.errors).toEqual([]);
      expect(Object.fromEntries(set.changes.map((c) => [c.id, c.action]))).toEqual({
        [`Namespace/${own}`]: 'created',
        [`ConfigMap/${own}/x`]: 'created',
      });
      expect(
        (await kubeRequest(kc, 'GET', `/api/v1/namespaces/${own}/configmaps/${inventoryName(`inv-${own}`)}`)).status,
      ).toBe(200);
    } finally {
      await kubeRequest(kc, 'DELETE', `/api/v1/namespaces/${own}`);
    }
  });
});
