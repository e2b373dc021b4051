import { describe, expect, it } from '@jest/globals';
import { resolveObjects, resourcesFromCrds, type DiscoveryLookup } from './resolve.js';
import type { ParsedObject } from './types.js';
import type { KubeObject, ResourceInfo } from '../kube/types.js';

const served: ResourceInfo[] = [
  { group: '', version: 'v1', kind: 'ConfigMap', plural: 'configmaps', namespaced: true },
  { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
  { group: 'apps', version: 'v1', kind: 'Deployment', plural: 'deployments', namespaced: true },
  {
    group: 'apiextensions.k8s.io',
    version: 'v1',
    kind: 'CustomResourceDefinition',
    plural: 'customresourcedefinitions',
    namespaced: false,
  },
];

function discovery(): DiscoveryLookup & { refreshes: number } {
  const table = new Map(served.map((r) => [`${r.group}/${r.version}/${r.kind}`, r]));
  return {
    refreshes: 0,
    ensureLoaded: async () => undefined,
    peek: (g, v, k) => table.get(`${g}/${v}/${k}`),
    async resolve(g, v, k) {
      this.refreshes++;
      return table.get(`${g}/${v}/${k}`);
    },
  };
}

function parsed(
  object: Partial<KubeObject> & { kind: string; apiVersion: string; metadata: KubeObject['metadata'] },
  line = 1,
): ParsedObject {
  return { object: object as KubeObject, source: { file: 'app.yaml', line } };
}

describe('resolveObjects', () => {
  it('puts namespaced objects without a namespace into the default namespace', async () => {
    const r = await resolveObjects(
      [parsed({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a' } })],
      discovery(),
      'team',
    );
    expect(r.errors).toEqual([]);
    expect(r.objects[0].object.metadata.namespace).toBe('team');
    expect(r.objects[0].id).toBe('ConfigMap/team/a');
    expect(r.objects[0].key).toBe('/ConfigMap/team/a');
  });

  it('rejects a cluster-scoped object with a namespace, naming file and line', async () => {
    const r = await resolveObjects(
      [parsed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', namespace: 'y' } }, 7)],
      discovery(),
      'default',
    );
    expect(r.objects).toEqual([]);
    expect(r.errors[0]).toMatchObject({
      code: 'NAMESPACE_ON_CLUSTER_SCOPED',
      file: 'app.yaml',
      line: 7,
      object: 'Namespace/x',
    });
    expect(r.errors[0].message).toMatch(/^app\.yaml:7: Namespace\/x: /);
  });

  it('names file and line for a kind the server does not serve, after asking discovery again', async () => {
    const d = discovery();
    const r = await resolveObjects(
      [parsed({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }, 3)],
      d,
      'default',
    );
    expect(d.refreshes).toBe(1);
    expect(r.errors[0]).toMatchObject({ code: 'UNKNOWN_KIND', file: 'app.yaml', line: 3 });
    expect(r.errors[0].message).toContain('example.com/v1 Widget "w"');
  });

  it('resolves a custom resource from a CRD in the same set', async () => {
    const crd = parsed({
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'widgets.example.com' },
      spec: {
        group: 'example.com',
        scope: 'Cluster',
        names: { kind: 'Widget', plural: 'widgets' },
        versions: [{ name: 'v1', served: true }],
      },
    });
    const r = await resolveObjects(
      [crd, parsed({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } })],
      discovery(),
      'default',
    );
    expect(r.errors).toEqual([]);
    expect(r.objects[1].resource).toEqual({
      group: 'example.com',
      version: 'v1',
      kind: 'Widget',
      plural: 'widgets',
      namespaced: false,
    });
    expect(r.objects[1].object.metadata.namespace).toBeUndefined();
    expect([...r.fromSameSetCrd]).toEqual(['example.com/Widget//w']);
  });

  it('finds duplicates that only appear once the namespace is defaulted', async () => {
    const r = await resolveObjects(
      [
        parsed({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a' } }, 1),
        parsed({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a', namespace: 'default' } }, 9),
      ],
      discovery(),
      'default',
    );
    expect(r.objects).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ code: 'DUPLICATE_OBJECT', line: 9 });
    expect(r.errors[0].message).toContain('first at app.yaml:1');
  });
});

describe('resourcesFromCrds', () => {
  it('lists every served version and skips unserved ones', () => {
    const crd = parsed({
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'gadgets.example.com' },
      spec: {
        group: 'example.com',
        scope: 'Namespaced',
        names: { kind: 'Gadget', plural: 'gadgets' },
        versions: [{ name: 'v1' }, { name: 'v2', served: false }],
      },
    });
    expect([...resourcesFromCrds([crd]).keys()]).toEqual(['example.com/v1/Gadget']);
  });
});
