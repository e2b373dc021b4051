import { describe, expect, it } from '@jest/globals';
import { gvkOf } from '../../common/object-id.js';
import { extractListKeys } from './schema.js';
import { appsDoc, coreDoc } from './testdata/fixtures.js';

describe('extractListKeys on the real apps/v1 OpenAPI document', () => {
  const keys = extractListKeys(appsDoc, { group: 'apps', version: 'v1', kind: 'Deployment' });

  it.each([
    ['/spec/template/spec/containers', ['name']],
    ['/spec/template/spec/initContainers', ['name']],
    ['/spec/template/spec/containers/*/env', ['name']],
    ['/spec/template/spec/containers/*/ports', ['containerPort', 'protocol']],
    ['/spec/template/spec/containers/*/volumeMounts', ['mountPath']],
    ['/spec/template/spec/volumes', ['name']],
    ['/spec/template/spec/imagePullSecrets', ['name']],
  ])('keys %s by %j', (path, expected) => {
    expect(keys.get(path)).toEqual(expected);
  });

  it('leaves atomic lists, status and metadata out', () => {
    expect(keys.has('/spec/template/spec/containers/*/args')).toBe(false);
    expect(keys.has('/spec/template/spec/tolerations')).toBe(false);
    expect([...keys.keys()].some((k) => k.startsWith('/status') || k.startsWith('/metadata'))).toBe(false);
  });

  it('finds StatefulSet lists too, including those under volumeClaimTemplates', () => {
    const sts = extractListKeys(appsDoc, gvkOf({ apiVersion: 'apps/v1', kind: 'StatefulSet' }));
    expect(sts.get('/spec/template/spec/containers')).toEqual(['name']);
  });

  it('keys Service ports by port and protocol in the core v1 document', () => {
    expect(extractListKeys(coreDoc, gvkOf({ apiVersion: 'v1', kind: 'Service' })).get('/spec/ports')).toEqual([
      'port',
      'protocol',
    ]);
  });

  it('returns no keys for a kind the document does not describe', () => {
    expect(extractListKeys(appsDoc, gvkOf({ apiVersion: 'apps/v1', kind: 'Nothing' })).size).toBe(0);
    expect(extractListKeys(null, gvkOf({ apiVersion: 'apps/v1', kind: 'Deployment' })).size).toBe(0);
  });
});

describe('extractListKeys on CRD-style schemas', () => {
  const doc = {
    components: {
      schemas: {
        'com.example.v1.Widget': {
          type: 'object',
          'x-kubernetes-group-version-kind': [{ group: 'example.com', version: 'v1', kind: 'Widget' }],
          properties: {
            spec: {
              type: 'object',
              properties: {
                rules: {
                  type: 'array',
                  'x-kubernetes-list-type': 'map',
                  'x-kubernetes-list-map-keys': ['host', 'port'],
                  items: { type: 'object' },
                },
                legacy: { type: 'array', 'x-kubernetes-patch-merge-key': 'id', items: { type: 'object' } },
                atomic: {
                  type: 'array',
                  'x-kubernetes-list-type': 'atomic',
                  'x-kubernetes-patch-merge-key': 'id',
                  items: { type: 'object' },
                },
                byName: {
                  type: 'object',
                  additionalProperties: {
                    type: 'array',
                    'x-kubernetes-list-type': 'map',
                    'x-kubernetes-list-map-keys': ['k'],
                    items: { type: 'object' },
                  },
                },
                tree: { allOf: [{ $ref: '#/components/schemas/com.example.v1.Node' }] },
              },
            },
          },
        },
        'com.example.v1.Node': {
          type: 'object',
          properties: {
            children: {
              type: 'array',
              'x-kubernetes-list-type': 'map',
              'x-kubernetes-list-map-keys': ['name'],
              items: { allOf: [{ $ref: '#/components/schemas/com.example.v1.Node' }] },
            },
          },
        },
      },
    },
  };

  it('reads list-map keys, falls back to the patch merge key, honours atomic, and survives recursive schemas', () => {
    const keys = extractListKeys(doc, gvkOf({ apiVersion: 'example.com/v1', kind: 'Widget' }));
    expect(Object.fromEntries(keys)).toEqual({
      '/spec/rules': ['host', 'port'],
      '/spec/legacy': ['id'],
      '/spec/byName/*': ['k'],
      '/spec/tree/children': ['name'],
    });
  });
});
