import { describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { slimManagedFields, slimPod } from './cache.js';
import { healthOf, recheckAt } from '../health/status.js';
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

describe('slimPod', () => {
  // The pods captured on the real node with their workloads (src/agent/health/testdata): health
  // judged from the slim pods the pod watch keeps is the health judged from the whole pods.
  const dir = fileURLToPath(new URL('../health/testdata/', import.meta.url));
  const fixtures = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => ({ name: f, ...(JSON.parse(readFileSync(`${dir}${f}`, 'utf8')) as Fixture) }))
    .filter((f) => f.pods?.length);

  it('has captured workloads with pods to check against', () => {
    expect(fixtures.length).toBeGreaterThan(3);
  });

  it.each(fixtures.map((f) => [f.name, f] as const))('keeps what health reads: %s', (_name, f) => {
    const now = Date.parse(f.capturedAt);
    expect(healthOf(f.object, { pods: f.pods!.map(slimPod), now })).toEqual(healthOf(f.object, { pods: f.pods, now }));
    expect(recheckAt(f.object, { pods: f.pods!.map(slimPod), now })).toEqual(
      recheckAt(f.object, { pods: f.pods, now }),
    );
  });

  it('drops what health does not read', () => {
    const pod = fixtures[0].pods![0];
    const slim = slimPod(pod);
    expect(slim).not.toHaveProperty('spec');
    expect(slim.metadata).not.toHaveProperty('managedFields');
    expect(JSON.stringify(slim).length).toBeLessThan(JSON.stringify(pod).length / 2);
  });
});

interface Fixture {
  capturedAt: string;
  object: KubeObject;
  pods?: KubeObject[];
}
