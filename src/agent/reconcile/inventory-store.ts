/**
 * The I/O half of the inventory: reads a unit's inventory ConfigMap and writes the next one, only
 * when its encoded entries changed (so an unchanged re-sync makes no write). Encoding, naming and
 * set arithmetic are inventory.ts's.
 */
import { isDeepStrictEqual } from 'node:util';
import { NotFoundError, type KubeClient } from '../kube/client.js';
import type { ResourceInfo, KubeObject } from '../kube/types.js';
import {
  decodeInventory,
  inventoryConfigMap,
  inventoryName,
  mergeFailedDeletes,
  type InventoryEntry,
} from './inventory.js';
import { INVENTORY_ID_ANNOTATION } from './labels.js';
import { escapePointerSegment } from '../kube/json-pointer.js';

const CONFIGMAPS: ResourceInfo = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};

/** A unit's inventory as last read or written. */
export interface InventoryState {
  entries: InventoryEntry[];
  /** The ConfigMap as the server returned it (undefined when there is none yet). */
  live?: KubeObject;
}

/** Reads the inventory ConfigMap of a unit; none yet is an empty inventory. */
export async function readInventory(
  client: KubeClient,
  unit: { name: string; namespace: string },
): Promise<InventoryState> {
  try {
    const live = await client.get(CONFIGMAPS, unit.namespace, inventoryName(unit.name));
    return { entries: decodeInventory(live), live };
  } catch (err) {
    if (err instanceof NotFoundError) return { entries: [] };
    throw err;
  }
}

/**
 * Before an apply creates objects the inventory does not list yet, adds them to it (as cli-utils
 * does): an agent killed in the middle of the apply then leaves an inventory that still names
 * everything it may have created, so a later sync of a commit without them prunes them instead of
 * leaving orphans nobody owns. The entries stay until the sync after the apply writes the exact
 * set. When the inventory's namespace does not exist yet (the commit itself creates it), nothing
 * is written: creating it here, unowned, would make the commit's own Namespace object fail the
 * `must_match` policy.
 */
export async function recordBeforeApply(
  client: KubeClient,
  unit: { name: string; namespace: string },
  inventoryId: string,
  previous: InventoryState,
  adding: InventoryEntry[],
): Promise<InventoryState> {
  const known = new Set(previous.entries.map((e) => e.key));
  const fresh = adding.filter((e) => !known.has(e.key));
  if (!fresh.length) return previous;
  return writeInventory(client, unit, inventoryId, previous, mergeFailedDeletes(previous.entries, fresh), {
    createNamespace: false,
  });
}

/**
 * Writes `entries` as the unit's inventory unless the stored one already says exactly that.
 * A missing inventory namespace is created, unless `createNamespace` is false: then nothing is
 * written and `previous` is returned.
 */
export async function writeInventory(
  client: KubeClient,
  unit: { name: string; namespace: string },
  inventoryId: string,
  previous: InventoryState,
  entries: InventoryEntry[],
  options: { createNamespace?: boolean } = {},
): Promise<InventoryState> {
  const desired = inventoryConfigMap({
    name: inventoryName(unit.name),
    namespace: unit.namespace,
    inventoryId,
    entries,
  });
  const live = previous.live;
  if (
    live &&
    isDeepStrictEqual(live.data ?? {}, desired.data) &&
    live.metadata.annotations?.[INVENTORY_ID_ANNOTATION] === inventoryId
  ) {
    return previous;
  }
  if (!live) {
    try {
      const created = await client.create(CONFIGMAPS, desired);
      return { entries: decodeInventory(created), live: created };
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      if (options.createNamespace === false) return previous;
      // The inventory namespace itself does not exist: create it, it is ours to need.
      await client.create(
        { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: unit.namespace } },
      );
      const created = await client.create(CONFIGMAPS, desired);
      return { entries: decodeInventory(created), live: created };
    }
  }
  const patched = await client.jsonPatch(CONFIGMAPS, unit.namespace, desired.metadata.name, [
    { op: 'test', path: '/metadata/resourceVersion', value: live.metadata.resourceVersion },
    { op: 'add', path: '/data', value: desired.data },
    live.metadata.annotations
      ? {
          op: 'add',
          path: `/metadata/annotations/${escapePointerSegment(INVENTORY_ID_ANNOTATION)}`,
          value: inventoryId,
        }
      : { op: 'add', path: '/metadata/annotations', value: { [INVENTORY_ID_ANNOTATION]: inventoryId } },
  ]);
  return { entries: decodeInventory(patched), live: patched };
}
