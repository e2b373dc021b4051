/**
 * Fault: the agent is SIGKILLed in the middle of an apply (some of a commit's objects exist, the
 * rest do not). After a restart the cluster converges with no object missing, none twice, the
 * inventory ConfigMap listing exactly the desired set, and no object carrying our inventory label
 * outside it, also after a following commit that removes half of them (prune after the crash).
 * Twice: restarted with its state dir (a container restart) and with a fresh one while a newer
 * commit waits (a pod rescheduled elsewhere, whose emptyDir state is gone). On the reusable stack
 * (e2e/harness/stack.ts): the agent runs as in a pod, with the RBAC of manifests/agent.
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { kubeRequest, waitFor } from '../harness/kube.js';
import { useStack } from '../harness/jest-stack.js';
import {
  INVENTORY_ID_ANNOTATION,
  INVENTORY_LABEL,
  OWNING_INVENTORY_ANNOTATION,
} from '../../src/agent/reconcile/labels.js';
import { MANIFEST_PROJECT } from '../harness/stack.js';
import { configMapNames, configMaps, range } from './manifests.js';

const BIG = 400;

type ConfigMap = {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  data?: Record<string, string>;
};

// The unit's inventory lives in the test namespace, so one namespace holds all the evidence.
const fixture = useStack('fault-crash', { pollInterval: '1s' });

/** Every ConfigMap in the cluster carrying our inventory label (any value: orphans anywhere count). */
async function labelled(): Promise<ConfigMap[]> {
  const res = await kubeRequest(
    fixture.kc,
    'GET',
    `/api/v1/configmaps?labelSelector=${encodeURIComponent(INVENTORY_LABEL)}`,
  );
  return (res.body as { items: ConfigMap[] }).items.filter(
    (c) =>
      c.metadata.namespace === fixture.ns.name ||
      c.metadata.annotations?.[OWNING_INVENTORY_ANNOTATION]?.includes(MANIFEST_PROJECT),
  );
}

async function countInNamespace(): Promise<number> {
  const res = await kubeRequest(
    fixture.kc,
    'GET',
    `/api/v1/namespaces/${fixture.ns.name}/configmaps?labelSelector=${encodeURIComponent(INVENTORY_LABEL)}`,
  );
  return (res.body as { items: unknown[] }).items.length;
}

/** Names listed by the unit's inventory ConfigMap (found by its inventory-id annotation). */
async function inventoryNames(): Promise<string[]> {
  const res = await kubeRequest(fixture.kc, 'GET', `/api/v1/namespaces/${fixture.ns.name}/configmaps`);
  const inv = (res.body as { items: ConfigMap[] }).items.filter(
    (c) => c.metadata.annotations?.[INVENTORY_ID_ANNOTATION],
  );
  expect(inv).toHaveLength(1);
  const rows = Object.values(inv[0].data ?? {}).flatMap((text) => JSON.parse(text) as string[][]);
  return rows.map((r) => `${r[2]}/${r[3]}/${r[4]}`).sort();
}

/** The cluster holds exactly `names` (each once), the inventory lists exactly them, nothing else has our label. */
async function expectConverged(names: string[]): Promise<void> {
  // Prune deletes in the foreground by default: a pruned object lingers, with a deletionTimestamp,
  // until the garbage collector removes it shortly after the agent logged 'applied'.
  const want = names.length;
  await waitFor(async () => (await labelled()).length === want, 10_000, `${want} labelled ConfigMaps`, 100).catch(
    () => undefined,
  );
  const live = await labelled();
  const liveNames = live.map((c) => `${c.metadata.namespace}/${c.metadata.name}`).sort();
  expect(new Set(liveNames).size).toBe(liveNames.length);
  const orphans = liveNames.filter((n) => !names.includes(n.split('/')[1]) || !n.startsWith(`${fixture.ns.name}/`));
  expect(orphans).toEqual([]);
  expect(liveNames).toEqual(names.map((n) => `${fixture.ns.name}/${n}`).sort());
  expect(await inventoryNames()).toEqual(names.map((n) => `ConfigMap/${fixture.ns.name}/${n}`).sort());
}

/** Pushes `indexes` as the desired set and SIGKILLs the agent once some but not all of them exist. */
async function killMidApply(indexes: number[], before: number): Promise<{ commit: string; seen: number }> {
  const commit = await fixture.stack.commit({ 'manifest.yaml': configMaps(fixture.ns.name, indexes) });
  await waitFor(
    async () => {
      const n = await countInNamespace();
      if (n >= indexes.length && n !== before)
        throw new Error(`the apply finished (${n} objects) before it could be interrupted`);
      return n >= before + 10 ? n : undefined;
    },
    20_000,
    'the apply under way',
    5,
  );
  await fixture.stack.killAgent();
  const after = await countInNamespace();
  expect(after).toBeLessThan(Math.max(indexes.length, before));
  return { commit, seen: after };
}

beforeAll(async () => {
  const { ns, stack } = fixture;
  const base = await stack.commit({ 'manifest.yaml': configMaps(ns.name, range(0, 50)) });
  await stack.waitForLog(stack.agent!, (r) => r.msg === 'applied' && r.commit === base, 20_000, 'the base set applied');
}, 60_000);

describe('the agent SIGKILLed in the middle of an apply', () => {
  it('converges after a restart with its state dir, and prunes correctly on the next commit', async () => {
    const { ns, stack } = fixture;
    const t0 = Date.now();
    const { commit, seen } = await killMidApply(range(0, BIG), 50);
    console.log(`crash (same state dir): killed with ${seen} of ${BIG} ConfigMaps present`);

    const restarted = Date.now();
    await stack.startAgent();
    await stack.waitForLog(
      stack.agent!,
      (r) => r.msg === 'applied' && r.commit === commit,
      30_000,
      `applied ${commit} after the restart`,
    );
    // The identity is kept in the state dir: the restarted process renews its own Lease at once
    // instead of waiting for the killed process's Lease to expire (15 s).
    const leader = await stack.waitForLog(stack.agent!, (r) => r.msg === 'became leader', 1000, 'leader');
    const leaderAfterMs = Date.parse(String(leader.time)) - restarted;
    console.log(`crash (same state dir): leader ${leaderAfterMs} ms after the restart`);
    expect(leaderAfterMs).toBeLessThan(5000);
    await expectConverged(configMapNames(range(0, BIG)));

    const half = await stack.commit({ 'manifest.yaml': configMaps(ns.name, range(0, BIG / 2)) });
    await stack.waitForLog(stack.agent!, (r) => r.msg === 'applied' && r.commit === half, 30_000, `applied ${half}`);
    await expectConverged(configMapNames(range(0, BIG / 2)));
    console.log(`crash (same state dir): converged in ${Date.now() - t0} ms`);
  }, 60_000);

  it('leaves no orphan when the pod comes back without its state and a newer commit removed what the interrupted apply created', async () => {
    const { ns, stack } = fixture;
    const t0 = Date.now();
    const { seen } = await killMidApply(range(0, BIG), BIG / 2);
    console.log(`crash (fresh state dir): killed with ${seen} of ${BIG} ConfigMaps present`);
    // Pushed while the agent is down: the objects the interrupted apply created are unwanted now.
    const smaller = await stack.commit({ 'manifest.yaml': configMaps(ns.name, range(0, 100)) });
    await rm(path.join(stack.dir, 'agent-state'), { recursive: true, force: true });
    await stack.startAgent();
    await stack.waitForLog(
      stack.agent!,
      (r) => r.msg === 'applied' && r.commit === smaller,
      30_000,
      `applied ${smaller} after the restart`,
    );
    await expectConverged(configMapNames(range(0, 100)));
    console.log(`crash (fresh state dir): converged in ${Date.now() - t0} ms`);
  }, 60_000);
});
