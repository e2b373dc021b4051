import { describe, expect, it } from '@jest/globals';
import type { JsonPatchOp } from '../kube/types.js';
import { identityFromKey, ignoredPointers, withoutIgnored, type IgnoreRule } from './ignore.js';

const deploy = { group: 'apps', kind: 'Deployment', namespace: 'default', name: 'nginx' };

describe('ignoredPointers', () => {
  const rules: IgnoreRule[] = [
    { kind: 'Deployment', paths: ['/spec/replicas'] },
    { group: 'apps', kind: 'Deployment', name: 'other', paths: ['/spec/template'] },
    { namespace: 'default', paths: ['/metadata/labels', '/spec/replicas'] },
    { group: '', kind: 'ConfigMap', paths: ['/data'] },
    { kind: '*', name: 'nginx', paths: ['/metadata/annotations'] },
  ];

  it.each([
    ['a Deployment named nginx in default', deploy, ['/spec/replicas', '/metadata/labels', '/metadata/annotations']],
    [
      'a Deployment named other in prod',
      { ...deploy, namespace: 'prod', name: 'other' },
      ['/spec/replicas', '/spec/template'],
    ],
    ['a core ConfigMap elsewhere', { group: '', kind: 'ConfigMap', namespace: 'x', name: 'c' }, ['/data']],
    ['a cluster-scoped Namespace', { group: '', kind: 'Namespace', name: 'demo' }, []],
  ])('protects the right fields of %s', (_label, obj, expected) => {
    expect(ignoredPointers(rules, obj)).toEqual(expected);
  });

  it('does not confuse groups: an apps rule leaves an extensions Deployment alone', () => {
    expect(
      ignoredPointers([{ group: 'apps', kind: 'Deployment', paths: ['/spec'] }], { ...deploy, group: 'extensions' }),
    ).toEqual([]);
  });
});

describe('identityFromKey', () => {
  it.each([
    ['apps/Deployment/default/nginx', { group: 'apps', kind: 'Deployment', namespace: 'default', name: 'nginx' }],
    ['/Namespace//demo', { group: '', kind: 'Namespace', name: 'demo' }],
    ['garbage', undefined],
  ])('reads %s', (key, expected) => {
    expect(identityFromKey(key)).toEqual(expected);
  });
});

describe('withoutIgnored', () => {
  const patch: JsonPatchOp[] = [
    { op: 'test', path: '/metadata/resourceVersion', value: '42' },
    { op: 'replace', path: '/spec/replicas', value: 2 },
    { op: 'replace', path: '/spec/template/spec/containers/0/image', value: 'nginx:1.27' },
  ];

  it('drops operations at or below an ignored pointer and keeps the rest with their guard', () => {
    expect(withoutIgnored(patch, ['/spec/template'])).toEqual([patch[0], patch[1]]);
  });

  it('does not treat a sibling with a common prefix as below the pointer', () => {
    expect(withoutIgnored([{ op: 'replace', path: '/spec/replicasExtra', value: 1 }], ['/spec/replicas'])).toHaveLength(
      1,
    );
  });

  it('is empty when only the resourceVersion guard would remain', () => {
    expect(withoutIgnored(patch, ['/spec'])).toEqual([]);
  });
});
