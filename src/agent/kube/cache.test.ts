import { describe, expect, it } from '@jest/globals';
import { slimManagedFields } from './cache.js';
import type { KubeObject } from './types.js';

const entry = (manager: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  manager,
  operation: 'Update',
  apiVersion: 'v1',
  time: '2026-11-25T23:00:00Z',
  fieldsType: 'FieldsV1',
  fieldsV1: { 'f:data': { 'f:a': {} } },
  ...extra,
});

function configMap(managedFields: Array<Record<string, unknown>>): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'a', namespace: 'ns', resourceVersion: '7', managedFields },
    data: { a: '1' },
  } as unknown as KubeObject;
}

describe('slimManagedFields', () => {
  it('keeps only the other managers drift may have to name, without touching the object it was given', () => {
    const obj = configMap([
      entry('gitops-agent'),
      entry('kubectl-edit'),
      entry('kube-controller-manager', { subresource: 'status' }),
    ]);
    const slim = slimManagedFields(obj, 'gitops-agent');
    expect(slim.metadata.managedFields?.map((e) => e.manager)).toEqual(['kubectl-edit']);
    expect(slim.data).toEqual({ a: '1' });
    expect(slim.metadata.resourceVersion).toBe('7');
    expect(obj.metadata.managedFields).toHaveLength(3);
  });

  it('drops managedFields altogether when only our own entry was there', () => {
    const slim = slimManagedFields(configMap([entry('gitops-agent')]), 'gitops-agent');
    expect(slim.metadata).toEqual({ name: 'a', namespace: 'ns', resourceVersion: '7' });
  });
});
