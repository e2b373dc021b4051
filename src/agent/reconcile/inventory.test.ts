import { describe, expect, it } from '@jest/globals';
import type { KubeObject } from '../kube/types.js';
import {
  decodeInventory,
  diffInventory,
  encodeInventory,
  entryOf,
  inventoryConfigMap,
  inventoryEntry,
  inventoryName,
  mergeFailedDeletes,
} from './inventory.js';
import { INVENTORY_ID_ANNOTATION } from './labels.js';

const deploy = inventoryEntry({
  group: 'apps',
  version: 'v1',
  kind: 'Deployment',
  namespace: 'default',
  name: 'web',
  uid: 'u1',
});
const svc = inventoryEntry({ group: '', version: 'v1', kind: 'Service', namespace: 'default', name: 'web' });
const ns = inventoryEntry({ group: '', version: 'v1', kind: 'Namespace', name: 'demo' });

describe('inventory encoding', () => {
  it('round-trips entries through a ConfigMap, sorted and deduplicated', () => {
    const cm = inventoryConfigMap({
      name: 'gitops-inventory-web',
      namespace: 'default',
      inventoryId: 'agent1/web',
      entries: [svc, deploy, ns, svc],
    });
    expect(cm.metadata.annotations?.[INVENTORY_ID_ANNOTATION]).toBe('agent1/web');
    expect(decodeInventory(cm)).toEqual([ns, svc, deploy].sort((a, b) => (a.key < b.key ? -1 : 1)));
  });

  it('encodes the same set to the same bytes whatever the input order', () => {
    expect(encodeInventory([svc, deploy, ns])).toEqual(encodeInventory([ns, deploy, svc]));
    expect(encodeInventory([])).toEqual({ entries: '[]\n' });
  });

  it('keys entries by group, kind, namespace and name, not by version', () => {
    expect(deploy.key).toBe('apps/Deployment/default/web');
    expect(deploy.id).toBe('Deployment/default/web');
    expect(ns.key).toBe('/Namespace//demo');
    expect(
      entryOf({ apiVersion: 'apps/v1beta2', kind: 'Deployment', metadata: { name: 'web', namespace: 'default' } }).key,
    ).toBe(deploy.key);
  });

  it('decodes a ConfigMap with no entries as an empty inventory', () => {
    expect(
      decodeInventory({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', namespace: 'default' } }),
    ).toEqual([]);
  });

  it.each([
    ['not JSON', '[oops'],
    ['not a list', '{}'],
    ['a short row', '[["apps","v1","Deployment"]]'],
  ])('refuses an inventory whose entries are %s, naming the ConfigMap', (_what, raw) => {
    const cm: KubeObject = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'inv', namespace: 'default' },
      data: { entries: raw },
    };
    expect(() => decodeInventory(cm)).toThrow(/^ConfigMap\/default\/inv: /);
  });

  it('makes a valid ConfigMap name from any unit name', () => {
    expect(inventoryName('web')).toBe('gitops-inventory-web');
    expect(inventoryName('Group/Project_Web')).toBe('gitops-inventory-group-project-web');
  });
});

describe('diffInventory and mergeFailedDeletes', () => {
  it('prunes what the old inventory has and the new set does not, keeping the rest', () => {
    const { toPrune, kept } = diffInventory(
      [deploy, svc, ns],
      [entryOf({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'default' } })],
    );
    expect(toPrune.map((e) => e.id)).toEqual(['Service/default/web', 'Namespace/demo']);
    expect(toPrune.every((e) => e !== undefined)).toBe(true);
    expect(kept).toEqual([deploy]);
  });

  it('prunes nothing when the sets are equal and everything when the new set is empty', () => {
    expect(diffInventory([deploy, svc], [svc, deploy]).toPrune).toEqual([]);
    expect(diffInventory([deploy, svc], []).toPrune).toEqual([deploy, svc]);
  });

  it('keeps entries whose delete failed in the stored inventory', () => {
    expect(mergeFailedDeletes([deploy], [svc]).map((e) => e.id)).toEqual([
      'Service/default/web',
      'Deployment/default/web',
    ]);
    expect(mergeFailedDeletes([deploy, svc], [svc])).toHaveLength(2);
  });
});
