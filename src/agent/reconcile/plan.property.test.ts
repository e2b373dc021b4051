import { describe, expect, it } from '@jest/globals';
import jsonpatch from 'fast-json-patch';
import type { JsonPatchOp, KubeObject } from '../kube/types.js';
import { planObject, projectFields } from './plan.js';
import { clone, deployment, deploymentKeys, liveDeployment } from '../kube/testdata/fixtures.js';

// Test data is free-form JSON read and edited by deep paths; a type for each would restate the fixture.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = KubeObject & Record<string, any>;

/** Small deterministic PRNG (mulberry32) so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A desired Deployment without quantities, so projections compare exactly. */
function base(r: () => number): Obj {
  const d = deployment() as Obj;
  const c = d.spec.template.spec.containers[0];
  delete c.resources;
  c.env = ['A', 'B', 'C', 'D', 'E'].filter(() => r() < 0.7).map((name) => ({ name, value: name.toLowerCase() }));
  if (r() < 0.5)
    d.spec.template.spec.containers.push({ name: 'log', image: 'busybox', env: [{ name: 'X', value: '1' }] });
  if (r() < 0.5) d.metadata.labels = { ...d.metadata.labels, tier: 'web' };
  return d;
}

function mutateDesired(d: Obj, r: () => number): Obj {
  const m = clone(d);
  const c = m.spec.template.spec.containers[0];
  if (r() < 0.3) m.spec.replicas = 1 + Math.floor(r() * 5);
  if (r() < 0.3) c.image = `nginx:1.${Math.floor(r() * 30)}`;
  if (r() < 0.4) c.env = c.env.filter(() => r() < 0.6);
  if (r() < 0.3) c.env.push({ name: `N${Math.floor(r() * 3)}`, value: 'n' });
  if (r() < 0.3) c.env.reverse();
  if (r() < 0.3 && m.spec.template.spec.containers.length > 1) m.spec.template.spec.containers.pop();
  if (r() < 0.2) m.spec.template.spec.containers.push({ name: 'extra', image: 'e' });
  if (r() < 0.3) delete m.metadata.labels;
  if (r() < 0.2) c.args = ['--x', String(Math.floor(r() * 3))];
  // Env names must stay unique, as the API server requires.
  c.env = c.env.filter(
    (e: { name: string }, i: number, all: Array<{ name: string }>) => all.findIndex((x) => x.name === e.name) === i,
  );
  return m;
}

function drift(live: Obj, r: () => number): void {
  const pod = live.spec.template.spec;
  if (r() < 0.3)
    pod.containers.splice(Math.floor(r() * (pod.containers.length + 1)), 0, { name: 'sidecar', image: 'proxy' });
  if (r() < 0.3)
    pod.containers[pod.containers.length - 1].env = [
      ...(pod.containers[pod.containers.length - 1].env ?? []),
      { name: 'INJ', value: 'i' },
    ];
  if (r() < 0.3) live.spec.replicas = 9;
  if (r() < 0.2) live.metadata.labels = { ...live.metadata.labels, extra: 'x' };
  if (r() < 0.2) {
    const c = pod.containers.find((x: { name: string }) => x.name === 'nginx');
    if (c) c.image = 'tampered';
  }
}

describe('planObject patches (property)', () => {
  it("apply cleanly in order to the live object and leave exactly what Git says in desired's fields, for 300 random histories", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      const first = base(r);
      const created = planObject({ desired: first, listKeys: deploymentKeys });
      const live = liveDeployment(created.body as KubeObject) as Obj;
      drift(live, r);
      const desired = mutateDesired(first, r);
      const plan = planObject({ desired, live, listKeys: deploymentKeys });
      let after: Obj;
      try {
        after = jsonpatch.applyPatch(clone(live), plan.patch as jsonpatch.Operation[], true, false).newDocument as Obj;
      } catch (err) {
        throw new Error(`seed ${seed}: patch does not apply: ${(err as Error).message}\n${JSON.stringify(plan.patch)}`);
      }
      expect({ seed, projection: projectFields(after, desired, deploymentKeys) }).toEqual({
        seed,
        projection: projectFields(desired, desired, deploymentKeys),
      });
      expect({ seed, action: planObject({ desired, live: after, listKeys: deploymentKeys }).action }).toEqual({
        seed,
        action: 'none',
      });
      // Entries others added survive unless Git itself names them.
      const names = after.spec.template.spec.containers.map((c: { name: string }) => c.name);
      if (live.spec.template.spec.containers.some((c: { name: string }) => c.name === 'sidecar'))
        expect({ seed, names }).toEqual({ seed, names: expect.arrayContaining(['sidecar']) });
    }
  });

  it('never sends anything but a resourceVersion test first', () => {
    const live = liveDeployment(planObject({ desired: deployment(), listKeys: deploymentKeys }).body as KubeObject);
    const ops: JsonPatchOp[] = planObject({ desired: deployment('nginx', 4), live, listKeys: deploymentKeys }).patch;
    expect(ops[0]).toEqual({ op: 'test', path: '/metadata/resourceVersion', value: '1001' });
  });
});
