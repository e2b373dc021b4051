/**
 * Which lists Kubernetes merges by key, read from the API server's OpenAPI v3 document for one
 * group/version. plan.ts uses this to match list entries by key (containers by name, ports by
 * containerPort+protocol) instead of by position, so entries others added are left alone and a
 * reordered list is not drift. Pure: the I/O half fetches `/openapi/v3/apis/<group>/<version>`.
 */
import type { GroupVersionKind } from '../../common/object-id.js';
import { escapePointerSegment } from './json-pointer.js';

/**
 * Path pattern → key field names. Patterns are JSON pointers from the object root with `*` for
 * any list item or map value, e.g. `/spec/template/spec/containers/*\/env` → `['name']`.
 */
export type ListKeys = ReadonlyMap<string, readonly string[]>;

export type { GroupVersionKind };

type Schema = Record<string, unknown>;

/** Deeper than any built-in type; a guard against pathological CRD schemas. */
const MAX_DEPTH = 48;

function isObject(v: unknown): v is Schema {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Finds the schema whose `x-kubernetes-group-version-kind` names gvk. */
function findRoot(schemas: Schema, gvk: GroupVersionKind): Schema | undefined {
  for (const name in schemas) {
    const s = schemas[name];
    if (!isObject(s)) continue;
    const tags = s['x-kubernetes-group-version-kind'];
    if (!Array.isArray(tags)) continue;
    for (const t of tags) {
      if (isObject(t) && (t.group ?? '') === gvk.group && t.version === gvk.version && t.kind === gvk.kind) return s;
    }
  }
  return undefined;
}

/** Key fields of a list schema: `x-kubernetes-list-type: map` keys, else the strategic-merge key. */
function keysOf(schema: Schema): readonly string[] | undefined {
  const type = schema['x-kubernetes-list-type'];
  const mapKeys = schema['x-kubernetes-list-map-keys'];
  if (type === 'map' && Array.isArray(mapKeys) && mapKeys.length > 0 && mapKeys.every((k) => typeof k === 'string'))
    return mapKeys as string[];
  if (type === 'atomic' || type === 'set') return undefined;
  const mergeKey = schema['x-kubernetes-patch-merge-key'];
  if (typeof mergeKey === 'string' && mergeKey) return [mergeKey];
  return undefined;
}

/**
 * Extracts the keyed lists of one kind from an OpenAPI v3 document (`components.schemas`,
 * `$ref`s and `allOf` wrappers resolved, recursive schemas cut at the first repeat). Returns an
 * empty map when the kind is not in the document: every list is then treated as atomic.
 */
export function extractListKeys(openapiV3Doc: unknown, gvk: GroupVersionKind): ListKeys {
  const out = new Map<string, readonly string[]>();
  if (!isObject(openapiV3Doc)) return out;
  const components = openapiV3Doc.components;
  const schemas = isObject(components) && isObject(components.schemas) ? components.schemas : {};
  const root = findRoot(schemas, gvk);
  if (!root) return out;

  const resolveRef = (ref: string): Schema | undefined => {
    const prefix = '#/components/schemas/';
    if (!ref.startsWith(prefix)) return undefined;
    const target = schemas[ref.slice(prefix.length)];
    return isObject(target) ? target : undefined;
  };

  // `active` holds the $refs on the current descent path, which is how recursion (JSONSchemaProps)
  // is cut without losing a type reached twice by different paths (PodSpec in several places).
  const active = new Set<string>();
  const walk = (schema: Schema, path: string, depth: number): void => {
    if (depth > MAX_DEPTH) return;
    const ref = schema.$ref;
    if (typeof ref === 'string') {
      if (active.has(ref)) return;
      const target = resolveRef(ref);
      if (!target) return;
      active.add(ref);
      walk(target, path, depth + 1);
      active.delete(ref);
    }
    for (const combinator of ['allOf', 'anyOf', 'oneOf'] as const) {
      const parts = schema[combinator];
      if (Array.isArray(parts)) for (const p of parts) if (isObject(p)) walk(p, path, depth + 1);
    }
    if (isObject(schema.items) || schema.type === 'array') {
      const keys = keysOf(schema);
      if (keys && !out.has(path)) out.set(path, keys);
      if (isObject(schema.items)) walk(schema.items, `${path}/*`, depth + 1);
    }
    if (isObject(schema.properties)) {
      for (const name in schema.properties) {
        const p = schema.properties[name];
        if (isObject(p)) walk(p, `${path}/${escapePointerSegment(name)}`, depth + 1);
      }
    }
    if (isObject(schema.additionalProperties)) walk(schema.additionalProperties, `${path}/*`, depth + 1);
  };
  walk(root, '', 0);
  // metadata's own lists (ownerReferences, managedFields) are server-owned or atomic for us.
  for (const k of [...out.keys()]) if (k.startsWith('/metadata/') || k.startsWith('/status')) out.delete(k);
  return out;
}
