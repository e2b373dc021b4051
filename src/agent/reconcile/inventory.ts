/**
 * Inventory arithmetic: the set of objects one sync unit owns, stored as one ConfigMap per unit
 * (`gitops-inventory-<unit>`), and the pure set operations prune needs (old minus new; failed
 * deletes stay in). Reading and writing the ConfigMap is the I/O half's job.
 *
 * Storage format: `data.entries` holds a JSON array, one line per object, each
 * `[group, version, kind, namespace, name, uid]` sorted by key, so an unchanged inventory encodes
 * to the same bytes and needs no write.
 */
import { UserError } from '../../common/errors.js';
import { objectId, objectKey, splitApiVersion } from '../../common/object-id.js';
import type { KubeObject } from '../kube/types.js';
import { INVENTORY_ID_ANNOTATION } from './labels.js';
import { ProblemCode } from '../../protocol/problems.js';

export interface InventoryEntry {
  /** objectKey: `group/Kind/namespace/name`, unique across groups; versions do not matter. */
  key: string;
  /** objectId: `Kind/namespace/name`. */
  id: string;
  group: string;
  version: string;
  kind: string;
  namespace?: string;
  name: string;
  /** UID when known, for the delete precondition. */
  uid?: string;
}

/** The ConfigMap data key holding the entries. */
export const INVENTORY_DATA_KEY = 'entries';

/** Builds an entry from its parts (key and id derived). */
export function inventoryEntry(parts: {
  group: string;
  version: string;
  kind: string;
  namespace?: string;
  name: string;
  uid?: string;
}): InventoryEntry {
  const apiVersion = parts.group ? `${parts.group}/${parts.version}` : parts.version;
  const ns = parts.namespace || undefined;
  return {
    key: objectKey({ apiVersion, kind: parts.kind, namespace: ns, name: parts.name }),
    id: objectId({ kind: parts.kind, namespace: ns, name: parts.name }),
    group: parts.group,
    version: parts.version,
    kind: parts.kind,
    ...(ns ? { namespace: ns } : {}),
    name: parts.name,
    ...(parts.uid ? { uid: parts.uid } : {}),
  };
}

/** The entry for a (resolved or live) object; pass the live object to record its uid. */
export function entryOf(obj: KubeObject): InventoryEntry {
  return inventoryEntry({
    ...splitApiVersion(obj.apiVersion),
    kind: obj.kind,
    namespace: obj.metadata.namespace,
    name: obj.metadata.name,
    uid: obj.metadata.uid,
  });
}

function sorted(entries: Iterable<InventoryEntry>): InventoryEntry[] {
  return [...entries].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Encodes entries as ConfigMap `data` (deterministic: sorted, one entry per line). */
export function encodeInventory(entries: readonly InventoryEntry[]): Record<string, string> {
  const lines = sorted(dedupe(entries)).map((e) =>
    JSON.stringify([e.group, e.version, e.kind, e.namespace ?? '', e.name, e.uid ?? '']),
  );
  return { [INVENTORY_DATA_KEY]: lines.length ? `[\n${lines.join(',\n')}\n]\n` : '[]\n' };
}

/** A valid ConfigMap name for a unit's inventory: `gitops-inventory-<unit>`, lowercased and sanitised. */
export function inventoryName(unit: string): string {
  const safe = unit
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, '-')
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
  return `gitops-inventory-${safe || 'default'}`.slice(0, 253).replace(/[^a-z0-9]+$/, '');
}

/** The inventory ConfigMap to write for a unit. */
export function inventoryConfigMap(opts: {
  name: string;
  namespace: string;
  inventoryId: string;
  entries: readonly InventoryEntry[];
}): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: opts.name,
      namespace: opts.namespace,
      annotations: { [INVENTORY_ID_ANNOTATION]: opts.inventoryId },
    },
    data: encodeInventory(opts.entries),
  };
}

/**
 * Decodes an inventory ConfigMap. A ConfigMap without entries decodes to an empty inventory; one
 * whose entries cannot be read is an error (pruning from a misread inventory could delete the
 * wrong things, so callers must stop, not guess).
 */
export function decodeInventory(configMap: KubeObject): InventoryEntry[] {
  const id = objectId({ kind: configMap.kind, namespace: configMap.metadata.namespace, name: configMap.metadata.name });
  const data = configMap.data as Record<string, unknown> | undefined;
  const raw = data?.[INVENTORY_DATA_KEY];
  if (raw === undefined) return [];
  let rows: unknown;
  try {
    rows = JSON.parse(String(raw));
  } catch (err) {
    throw new UserError(
      ProblemCode.INVENTORY_CORRUPT,
      `${id}: data.${INVENTORY_DATA_KEY} is not JSON: repair or delete the inventory ConfigMap`,
      { cause: err },
    );
  }
  if (!Array.isArray(rows))
    throw new UserError(
      ProblemCode.INVENTORY_CORRUPT,
      `${id}: data.${INVENTORY_DATA_KEY} is not a list: repair or delete the inventory ConfigMap`,
    );
  return rows.map((row, i) => {
    if (
      !Array.isArray(row) ||
      row.length < 5 ||
      !row.every((c) => typeof c === 'string') ||
      !row[2] ||
      !row[4] ||
      !row[1]
    ) {
      throw new UserError(
        ProblemCode.INVENTORY_CORRUPT,
        `${id}: entry ${i} is not [group, version, kind, namespace, name, uid]: repair or delete the inventory ConfigMap`,
      );
    }
    const [group, version, kind, namespace, name, uid] = row as string[];
    return inventoryEntry({ group, version, kind, namespace, name, uid });
  });
}

function dedupe(entries: Iterable<InventoryEntry>): InventoryEntry[] {
  const byKey = new Map<string, InventoryEntry>();
  for (const e of entries) if (!byKey.has(e.key)) byKey.set(e.key, e);
  return [...byKey.values()];
}

/**
 * Old inventory against the next one: `toPrune` are old entries the next set no longer has (with
 * their recorded uid, for the delete precondition), `kept` are old entries still wanted.
 */
export function diffInventory(
  old: readonly InventoryEntry[],
  next: readonly InventoryEntry[],
): { toPrune: InventoryEntry[]; kept: InventoryEntry[] } {
  const wanted = new Set(next.map((e) => e.key));
  const toPrune: InventoryEntry[] = [];
  const kept: InventoryEntry[] = [];
  for (const e of dedupe(old)) (wanted.has(e.key) ? kept : toPrune).push(e);
  return { toPrune, kept };
}

/**
 * The inventory to store after prune: the next set plus every entry whose delete failed, so it is retried and never
 * forgotten.
 */
export function mergeFailedDeletes(
  next: readonly InventoryEntry[],
  failed: readonly InventoryEntry[],
): InventoryEntry[] {
  return sorted(dedupe([...next, ...failed]));
}
