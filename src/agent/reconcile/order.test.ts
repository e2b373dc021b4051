import { describe, expect, it } from '@jest/globals';
import type { ResolvedObject } from './types.js';
import type { KubeObject } from '../kube/types.js';
import { applyStages, crdFor, isCustomResourceOf, pruneOrder, stageOf } from './order.js';

function obj(apiVersion: string, kind: string, name: string, namespaced = true): ResolvedObject {
  const group = apiVersion.includes('/') ? apiVersion.split('/')[0] : '';
  const object: KubeObject = { apiVersion, kind, metadata: { name, ...(namespaced ? { namespace: 'default' } : {}) } };
  return {
    object,
    source: { file: 'm.yaml', line: 1 },
    id: namespaced ? `${kind}/default/${name}` : `${kind}/${name}`,
    key: `${group}/${kind}/${namespaced ? 'default' : ''}/${name}`,
    resource: {
      group,
      version: apiVersion.split('/').pop() as string,
      kind,
      plural: `${kind.toLowerCase()}s`,
      namespaced,
    },
  };
}

const crd: KubeObject = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'widgets.example.com' },
  spec: { group: 'example.com', names: { kind: 'Widget', plural: 'widgets' } },
};

describe('applyStages', () => {
  it('puts Namespaces and CRDs first, RBAC and configuration next, workloads after, webhooks last, keeping input order within a stage', () => {
    const input = [
      obj('apps/v1', 'Deployment', 'web'),
      obj('admissionregistration.k8s.io/v1', 'ValidatingWebhookConfiguration', 'hook', false),
      obj('v1', 'Service', 'web'),
      obj('v1', 'ConfigMap', 'cfg'),
      obj('example.com/v1', 'Widget', 'w'),
      obj('rbac.authorization.k8s.io/v1', 'ClusterRoleBinding', 'crb', false),
      obj('v1', 'Namespace', 'demo', false),
      obj('apiextensions.k8s.io/v1', 'CustomResourceDefinition', 'widgets.example.com', false),
      obj('rbac.authorization.k8s.io/v1', 'ClusterRole', 'cr', false),
      obj('v1', 'ServiceAccount', 'sa'),
    ];
    expect(applyStages(input).map((s) => s.map((o) => o.id))).toEqual([
      ['Namespace/demo', 'CustomResourceDefinition/widgets.example.com'],
      ['ConfigMap/default/cfg', 'ClusterRoleBinding/crb', 'ClusterRole/cr', 'ServiceAccount/default/sa'],
      ['Deployment/default/web', 'Service/default/web', 'Widget/default/w'],
      ['ValidatingWebhookConfiguration/hook'],
    ]);
  });

  it('drops empty stages', () => {
    expect(
      applyStages([obj('apps/v1', 'Deployment', 'a'), obj('apps/v1', 'Deployment', 'b')]).map((s) => s.length),
    ).toEqual([2]);
    expect(applyStages([])).toEqual([]);
  });

  it('matches kinds with their API group, so a custom kind named Namespace is not a definition', () => {
    expect(stageOf('', 'Namespace')).toBe(0);
    expect(stageOf('example.com', 'Namespace')).toBe(2);
    expect(stageOf('rbac.authorization.k8s.io', 'ClusterRole')).toBe(1);
  });
});

describe('pruneOrder', () => {
  it('prunes workloads first and Namespaces and CRDs last', () => {
    const entries = [
      { group: '', kind: 'Namespace', name: 'demo' },
      { group: 'apps', kind: 'Deployment', name: 'a' },
      { group: 'apiextensions.k8s.io', kind: 'CustomResourceDefinition', name: 'w' },
      { group: '', kind: 'ConfigMap', name: 'c' },
      { group: 'apps', kind: 'Deployment', name: 'b' },
    ];
    expect(pruneOrder(entries).map((s) => s.map((e) => e.name))).toEqual([['b', 'a'], ['c'], ['w', 'demo']]);
  });
});

describe('isCustomResourceOf', () => {
  it('finds the CRD defining a custom resource in the same set', () => {
    const widget: KubeObject = { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } };
    expect(isCustomResourceOf(widget, [crd])).toBe(true);
    expect(crdFor(widget, [crd])).toBe(crd);
  });

  it('does not match another group or kind', () => {
    expect(isCustomResourceOf({ apiVersion: 'other.com/v1', kind: 'Widget', metadata: { name: 'w' } }, [crd])).toBe(
      false,
    );
    expect(isCustomResourceOf({ apiVersion: 'example.com/v1', kind: 'Gadget', metadata: { name: 'g' } }, [crd])).toBe(
      false,
    );
  });
});
