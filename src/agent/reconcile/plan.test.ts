import { describe, expect, it } from '@jest/globals';
import jsonpatch from 'fast-json-patch';
import type { JsonPatchOp, KubeObject } from '../kube/types.js';
import { APPLIED_FIELDS_ANNOTATION } from './labels.js';
import { appliedFieldsOf, desiredHash, planObject, projectFields } from './plan.js';
import type { ListKeys } from '../kube/schema.js';
import {
  clone,
  configMap,
  configMapKeys,
  deployment,
  deploymentKeys,
  liveConfigMap,
  liveDeployment,
  liveService,
  secretKeys,
  service,
  serviceKeys,
} from '../kube/testdata/fixtures.js';

// Test data is free-form JSON read and edited by deep paths; a type for each would restate the fixture.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = KubeObject & Record<string, any>;

/** The live object after the agent created `desired` and the API server defaulted it. */
function created(desired: KubeObject, keys: ListKeys, serverize: (o: KubeObject) => KubeObject): Obj {
  const plan = planObject({ desired, listKeys: keys });
  expect(plan.action).toBe('create');
  return serverize(plan.body as KubeObject) as Obj;
}

/** Applies a plan's patch to live the way the API server would (ops in order, test included). */
function applied(live: KubeObject, patch: JsonPatchOp[]): Obj {
  return jsonpatch.applyPatch(clone(live), patch as jsonpatch.Operation[], true, false).newDocument as Obj;
}

/** Plans, applies, and checks the result converged: projection equals desired's and a re-plan is 'none'. */
function convergeCheck(desired: KubeObject, live: KubeObject, keys: ListKeys): Obj {
  const plan = planObject({ desired, live, listKeys: keys });
  const after = applied(live, plan.patch);
  expect(planObject({ desired, live: after, listKeys: keys }).action).toBe('none');
  return after;
}

describe('planObject', () => {
  it('plans a create with the applied-fields annotation when nothing is live', () => {
    const plan = planObject({ desired: deployment(), listKeys: deploymentKeys });
    expect(plan.action).toBe('create');
    expect(plan.body?.metadata.annotations?.[APPLIED_FIELDS_ANNOTATION]).toBe(plan.appliedFields);
    expect(plan.appliedFields).toContain('containers[name=nginx]');
  });

  it('finds nothing to do for an unchanged object whose live copy carries server defaults, status and normalised quantities', () => {
    const live = created(deployment(), deploymentKeys, liveDeployment);
    expect(planObject({ desired: deployment(), live, listKeys: deploymentKeys })).toEqual({
      action: 'none',
      patch: [],
      appliedFields: appliedFieldsOf(deployment(), deploymentKeys),
    });
  });

  it('patches a changed field with a resourceVersion test first and nothing else', () => {
    const live = created(deployment(), deploymentKeys, liveDeployment);
    const plan = planObject({ desired: deployment('nginx', 3), live, listKeys: deploymentKeys });
    expect(plan.action).toBe('patch');
    expect(plan.patch).toEqual([
      { op: 'test', path: '/metadata/resourceVersion', value: '1001' },
      { op: 'replace', path: '/spec/replicas', value: 3 },
    ]);
    expect(applied(live, plan.patch).spec.replicas).toBe(3);
  });

  it('removes a field that Git specified last time and no longer does, and records the new field set', () => {
    const live = created(deployment(), deploymentKeys, liveDeployment);
    const desired = deployment() as Obj;
    delete desired.metadata.labels;
    delete desired.spec.template.spec.containers[0].resources.limits.memory;
    const plan = planObject({ desired, live, listKeys: deploymentKeys });
    expect(plan.patch).toContainEqual({ op: 'remove', path: '/metadata/labels/app.kubernetes.io~1name' });
    expect(plan.patch).toContainEqual({
      op: 'remove',
      path: '/spec/template/spec/containers/0/resources/limits/memory',
    });
    expect(plan.patch).toContainEqual({
      op: 'add',
      path: `/metadata/annotations/gitops.dev~1applied-fields`,
      value: plan.appliedFields,
    });
    const after = convergeCheck(desired, live, deploymentKeys);
    expect(after.metadata.labels).toEqual({});
    expect(after.spec.template.spec.containers[0].resources.limits).toEqual({ cpu: '500m' });
  });

  it('does not remove a field that another manager set and Git never specified', () => {
    const live = created(deployment(), deploymentKeys, liveDeployment);
    live.metadata.labels = { ...live.metadata.labels, team: 'web' };
    live.spec.template.spec.nodeSelector = { disk: 'ssd' };
    expect(planObject({ desired: deployment(), live, listKeys: deploymentKeys }).action).toBe('none');
  });

  it('leaves a Service clusterIP that the API server allocated alone', () => {
    const live = created(service(), serviceKeys, liveService);
    expect(planObject({ desired: service(), live, listKeys: serviceKeys }).action).toBe('none');
  });

  it('matches Service ports by port when Git leaves the protocol to its default', () => {
    const live = created(service(), serviceKeys, liveService);
    const desired = service() as Obj;
    desired.spec.ports[0].targetPort = 9090;
    const plan = planObject({ desired, live, listKeys: serviceKeys });
    expect(plan.patch.slice(1)).toEqual([{ op: 'replace', path: '/spec/ports/0/targetPort', value: 9090 }]);
  });

  it('treats an int and a numeric string as different where Kubernetes allows int-or-string', () => {
    const live = created(service(), serviceKeys, liveService);
    const desired = service() as Obj;
    desired.spec.ports[0].targetPort = '8080';
    expect(planObject({ desired, live, listKeys: serviceKeys }).action).toBe('patch');
  });

  it('plans a Secret stringData as data and sees no drift when the live data holds the same bytes', () => {
    const secret: KubeObject = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 's', namespace: 'default' },
      type: 'Opaque',
      stringData: { password: 'hunter2' },
      data: { user: 'YWRtaW4=' },
    };
    const plan = planObject({ desired: secret, listKeys: secretKeys });
    expect(plan.appliedFields).toBe('data(password,user),type');
    const live = {
      ...clone(plan.body as KubeObject),
      metadata: { ...plan.body!.metadata, resourceVersion: '5' },
    } as Obj;
    delete live.stringData;
    live.data = { user: 'YWRtaW4=', password: Buffer.from('hunter2').toString('base64') };
    expect(planObject({ desired: secret, live, listKeys: secretKeys }).action).toBe('none');
    const changed = { ...secret, stringData: { password: 'hunter3' } };
    expect(planObject({ desired: changed, live, listKeys: secretKeys }).patch).toContainEqual({
      op: 'replace',
      path: '/data/password',
      value: Buffer.from('hunter3').toString('base64'),
    });
  });

  it('keeps a container that another field manager added (an injected sidecar)', () => {
    const live = created(deployment(), deploymentKeys, liveDeployment);
    live.spec.template.spec.containers.unshift({ name: 'istio-proxy', image: 'proxy:1' });
    expect(planObject({ desired: deployment(), live, listKeys: deploymentKeys }).action).toBe('none');
    const plan = planObject({ desired: deployment('nginx', 5), live, listKeys: deploymentKeys });
    expect(applied(live, plan.patch).spec.template.spec.containers.map((c: { name: string }) => c.name)).toEqual([
      'istio-proxy',
      'nginx',
    ]);
  });

  it('keeps an env var another manager added and patches the right entry by key', () => {
    const live = created(deployment(), deploymentKeys, liveDeployment);
    live.spec.template.spec.containers[0].env.splice(1, 0, { name: 'INJECTED', value: 'x' });
    expect(planObject({ desired: deployment(), live, listKeys: deploymentKeys }).action).toBe('none');
    const desired = deployment() as Obj;
    desired.spec.template.spec.containers[0].env[1].value = '4';
    const plan = planObject({ desired, live, listKeys: deploymentKeys });
    expect(plan.patch.slice(1)).toEqual([
      { op: 'replace', path: '/spec/template/spec/containers/0/env/2/value', value: '4' },
    ]);
  });

  it('removes list entries that Git removed, highest index first, and appends new ones', () => {
    const desired0 = deployment() as Obj;
    desired0.spec.template.spec.containers[0].env.push({ name: 'A', value: '1' }, { name: 'B', value: '2' });
    const live = created(desired0, deploymentKeys, liveDeployment);
    live.spec.template.spec.containers[0].env.push({ name: 'OTHER', value: 'kept' });
    const desired = deployment() as Obj;
    desired.spec.template.spec.containers[0].env = [
      { name: 'LEVEL', value: '3' },
      { name: 'NEW', value: 'n' },
    ];
    const plan = planObject({ desired, live, listKeys: deploymentKeys });
    const envOps = plan.patch.filter((o) => o.path.includes('/env'));
    expect(envOps).toEqual([
      { op: 'remove', path: '/spec/template/spec/containers/0/env/3' },
      { op: 'remove', path: '/spec/template/spec/containers/0/env/2' },
      { op: 'remove', path: '/spec/template/spec/containers/0/env/0' },
      { op: 'add', path: '/spec/template/spec/containers/0/env/-', value: { name: 'NEW', value: 'n' } },
    ]);
    const after = convergeCheck(desired, live, deploymentKeys);
    expect(after.spec.template.spec.containers[0].env.map((e: { name: string }) => e.name)).toEqual([
      'LEVEL',
      'OTHER',
      'NEW',
    ]);
  });

  it('removes a whole container Git removed while patching another one in the same list', () => {
    const desired0 = deployment() as Obj;
    desired0.spec.template.spec.containers.push({ name: 'log', image: 'busybox' });
    const live = created(desired0, deploymentKeys, liveDeployment);
    const desired = deployment() as Obj;
    desired.spec.template.spec.containers[0].image = 'nginx:1.28';
    const after = convergeCheck(desired, live, deploymentKeys);
    expect(
      after.spec.template.spec.containers.map((c: { name: string; image: string }) => `${c.name}=${c.image}`),
    ).toEqual(['nginx=nginx:1.28']);
  });

  it('does not see a reordered keyed list in Git as drift', () => {
    const live = created(deployment(), deploymentKeys, liveDeployment);
    const desired = deployment() as Obj;
    desired.spec.template.spec.containers[0].env.reverse();
    expect(planObject({ desired, live, listKeys: deploymentKeys }).action).toBe('none');
  });

  it('replaces an atomic list whole when it differs', () => {
    const desired0 = deployment() as Obj;
    desired0.spec.template.spec.containers[0].args = ['-a', '-b'];
    const live = created(desired0, deploymentKeys, liveDeployment);
    const desired = clone(desired0);
    desired.spec.template.spec.containers[0].args = ['-b', '-a'];
    const plan = planObject({ desired, live, listKeys: deploymentKeys });
    expect(plan.patch.slice(1)).toEqual([
      { op: 'replace', path: '/spec/template/spec/containers/0/args', value: ['-b', '-a'] },
    ]);
  });

  it('never reverts fields named by ignore pointers, wildcards included', () => {
    const live = created(deployment(), deploymentKeys, liveDeployment);
    live.spec.replicas = 7;
    live.spec.template.spec.containers[0].image = 'nginx:hotfix';
    const plan = planObject({
      desired: deployment(),
      live,
      listKeys: deploymentKeys,
      ignore: ['/spec/replicas', '/spec/template/spec/containers/*/image'],
    });
    expect(plan.action).toBe('none');
    expect(
      planObject({ desired: deployment(), live, listKeys: deploymentKeys, ignore: ['/spec/replicas'] }).patch.slice(1),
    ).toEqual([{ op: 'replace', path: '/spec/template/spec/containers/0/image', value: 'nginx:1.27' }]);
  });

  it('reports drift a manual change made, and reverts it to what Git says', () => {
    const live = created(deployment(), deploymentKeys, liveDeployment);
    live.spec.template.spec.containers[0].resources.limits.cpu = '2';
    live.spec.template.metadata.labels.app = 'hacked';
    const after = convergeCheck(deployment(), live, deploymentKeys);
    expect(after.spec.template.spec.containers[0].resources.limits.cpu).toBe('0.5');
  });

  it('trusts the cached server-normalised form for values normalize.ts does not know', () => {
    const desired = configMap() as Obj;
    desired.data['weird'] = 'a';
    const live = created(desired, configMapKeys, liveConfigMap);
    live.data.weird = 'A'; // pretend the server canonicalises this value
    expect(planObject({ desired, live, listKeys: configMapKeys }).action).toBe('patch');
    const normalized = projectFields(live, desired, configMapKeys);
    expect(planObject({ desired, live, listKeys: configMapKeys, normalized }).action).toBe('none');
    live.data.mode = 'dev';
    expect(planObject({ desired, live, listKeys: configMapKeys, normalized }).action).toBe('patch');
  });

  it('adds the annotations map when the live object has none', () => {
    const live = liveConfigMap(configMap()) as Obj;
    const plan = planObject({ desired: configMap(), live, listKeys: configMapKeys });
    expect(plan.patch.slice(1)).toEqual([
      { op: 'add', path: '/metadata/annotations', value: { [APPLIED_FIELDS_ANNOTATION]: plan.appliedFields } },
    ]);
    convergeCheck(configMap(), live, configMapKeys);
  });

  it('adds a new desired annotation and ours in an order that applies when live has no annotations', () => {
    const live = liveConfigMap(configMap()) as Obj;
    const desired = configMap();
    desired.metadata.annotations = { owner: 'web' };
    const after = convergeCheck(desired, live, configMapKeys);
    expect(Object.keys(after.metadata.annotations ?? {})).toEqual(['owner', APPLIED_FIELDS_ANNOTATION]);
  });
});

describe('projectFields and desiredHash', () => {
  it('projects only the fields desired specifies, keyed entries in desired order', () => {
    const live = created(deployment(), deploymentKeys, liveDeployment);
    live.spec.template.spec.containers.unshift({ name: 'sidecar', image: 'x' });
    const projected = projectFields(live, deployment(), deploymentKeys) as Obj;
    expect(projected.status).toBeUndefined();
    expect(projected.metadata).toEqual({ labels: { 'app.kubernetes.io/name': 'nginx' } });
    expect(projected.spec.template.spec.containers).toEqual([
      {
        name: 'nginx',
        image: 'nginx:1.27',
        ports: [{ containerPort: 80 }],
        env: [
          { name: 'MODE', value: 'prod' },
          { name: 'LEVEL', value: '3' },
        ],
        resources: { limits: { cpu: '500m', memory: '1Gi' }, requests: { cpu: '1' } },
      },
    ]);
  });

  it('hashes equal objects equally regardless of key order, and different objects differently', () => {
    const a = deployment();
    const b = { spec: a.spec, metadata: a.metadata, kind: a.kind, apiVersion: a.apiVersion } as KubeObject;
    expect(desiredHash(clone(b))).toBe(desiredHash(clone(a)));
    expect(desiredHash(deployment('nginx', 3))).not.toBe(desiredHash(a));
  });
});

describe('planObject with an empty keyed list in Git', () => {
  it('keeps entries others added and removes only those Git had before', () => {
    const desired0 = deployment() as Obj;
    const live = created(desired0, deploymentKeys, liveDeployment);
    live.spec.template.spec.containers[0].env.push({ name: 'INJECTED', value: 'x' });
    const desired = deployment() as Obj;
    desired.spec.template.spec.containers[0].env = [];
    const after = convergeCheck(desired, live, deploymentKeys);
    expect(after.spec.template.spec.containers[0].env).toEqual([{ name: 'INJECTED', value: 'x' }]);
    expect(planObject({ desired, live: after, listKeys: deploymentKeys }).appliedFields).not.toContain('env');
  });
});
