import { describe, expect, it } from '@jest/globals';
import { InvalidError, resourcePath, withTypeMeta } from './client.js';
import type { KubeObject, ResourceInfo } from './types.js';

const deployments: ResourceInfo = {
  group: 'apps',
  version: 'v1',
  kind: 'Deployment',
  plural: 'deployments',
  namespaced: true,
};
const namespaces: ResourceInfo = {
  group: '',
  version: 'v1',
  kind: 'Namespace',
  plural: 'namespaces',
  namespaced: false,
};

describe('resourcePath', () => {
  it.each([
    [deployments, 'web', 'app', '/apis/apps/v1/namespaces/web/deployments/app'],
    [deployments, undefined, undefined, '/apis/apps/v1/deployments'],
    [namespaces, undefined, 'demo', '/api/v1/namespaces/demo'],
    [namespaces, 'ignored', 'demo', '/api/v1/namespaces/demo'],
  ])('builds the URL path of %p in %p named %p', (info, ns, name, path) => {
    expect(resourcePath(info, ns, name)).toBe(path);
  });
});

describe('InvalidError', () => {
  it('recognises the bare 422 the API server sends for a failed resourceVersion test', () => {
    const err = new InvalidError('user', 'KUBE_INVALID', 'ConfigMap/a/b', 422, {
      message: 'the server rejected our request due to an error in our request',
      reason: 'Invalid',
      details: {},
    });
    expect(err.isTestFailure).toBe(true);
    expect(err.message).toBe('ConfigMap/a/b: the server rejected our request due to an error in our request');
  });

  it('tells a validation failure and an immutable field apart from a failed test, with the causes in the message', () => {
    const err = new InvalidError('user', 'KUBE_INVALID', 'Service/a/b', 422, {
      message: 'Service "b" is invalid: spec.clusterIP: Invalid value: "10.0.0.9": field is immutable',
      reason: 'Invalid',
      details: {
        name: 'b',
        causes: [{ message: 'Invalid value: "10.0.0.9": field is immutable', field: 'spec.clusterIP' }],
      },
    });
    expect(err.isTestFailure).toBe(false);
    expect(err.isImmutable).toBe(true);
    expect(err.message.startsWith('Service/a/b: ')).toBe(true);
  });
});

describe('withTypeMeta', () => {
  it('gives list items back their apiVersion and kind', () => {
    const obj = withTypeMeta({ metadata: { name: 'x' } } as KubeObject, deployments);
    expect([obj.apiVersion, obj.kind]).toEqual(['apps/v1', 'Deployment']);
  });
});
