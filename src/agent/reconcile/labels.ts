/**
 * The metadata this agent writes on the objects it manages: one label (so watches can select our
 * objects) and a few annotations (ownership, the field set applied last time, per-object opt-outs).
 * Every other module reads these names from here; nothing else spells them.
 */
import { createHash } from 'node:crypto';

/** Label on every managed object; value is `inventoryLabelValue(inventoryId)`. Used as a watch selector. */
export const INVENTORY_LABEL = 'gitops.dev/inventory';
/** Annotation holding the full inventory id that owns the object (labels are too short for it). */
export const OWNING_INVENTORY_ANNOTATION = 'gitops.dev/owning-inventory';
/** Annotation holding the compact field set applied last time (see plan.ts `encodeFieldSet`). */
export const APPLIED_FIELDS_ANNOTATION = 'gitops.dev/applied-fields';
/** Per-object prune opt-out: `gitops.dev/prune: disabled`. */
export const PRUNE_ANNOTATION = 'gitops.dev/prune';
export const PRUNE_DISABLED = 'disabled';
/** Opt-in to delete-and-recreate when an immutable field changes: `gitops.dev/recreate: on-immutable-change`. */
export const RECREATE_ANNOTATION = 'gitops.dev/recreate';
export const RECREATE_ON_IMMUTABLE_CHANGE = 'on-immutable-change';
/** Annotation on the inventory ConfigMap itself naming the inventory id it stores. */
export const INVENTORY_ID_ANNOTATION = 'gitops.dev/inventory-id';
/** Kubernetes' own client-side apply annotation; may contain Secret values, so report.ts masks it. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

const LABEL_VALUE_MAX = 63;
const LABEL_VALUE_RE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/**
 * The label value for an inventory id: the id itself when it is a valid label value, otherwise a
 * readable sanitised prefix plus a hash of the full id, so distinct ids never share a value.
 */
export function inventoryLabelValue(inventoryId: string): string {
  if (inventoryId.length <= LABEL_VALUE_MAX && LABEL_VALUE_RE.test(inventoryId)) return inventoryId;
  const hash = createHash('sha256').update(inventoryId).digest('hex').slice(0, 10);
  const prefix = inventoryId
    .replace(/[^-A-Za-z0-9_.]+/g, '-')
    .slice(0, LABEL_VALUE_MAX - hash.length - 1)
    .replace(/^[^A-Za-z0-9]+/, '')
    .replace(/[^A-Za-z0-9]+$/, '');
  return prefix ? `${prefix}-${hash}` : hash;
}

/** True when `metadata.annotations` opt the object out of prune. */
export function pruneDisabled(annotations: Record<string, string> | undefined): boolean {
  return annotations?.[PRUNE_ANNOTATION] === PRUNE_DISABLED;
}

/** True when the object opted in to delete-and-recreate on an immutable-field change. */
export function recreateOnImmutableChange(annotations: Record<string, string> | undefined): boolean {
  return annotations?.[RECREATE_ANNOTATION] === RECREATE_ON_IMMUTABLE_CHANGE;
}
