/**
 * `drift.ignore` as pure decisions: which JSON pointers of an object the rules protect, and the
 * patch left once operations on those are removed. Both the periodic sync (engine.ts: existing
 * objects keep those fields as they are live) and drift correction (drift.ts) use them.
 */
import { groupOf } from '../../common/object-id.js';
import type { JsonPatchOp } from '../kube/types.js';

/** One rule: the objects it selects (absent or `*` = any) and the JSON pointers it protects on them. */
export interface IgnoreRule {
  group?: string;
  kind?: string;
  namespace?: string;
  name?: string;
  paths: string[];
}

/** What an ignore rule is matched against. */
export interface ObjectIdentity {
  /** API group, `''` for the core group. */
  group: string;
  kind: string;
  namespace?: string;
  name: string;
}

/** Identity from an object. */
export function identityOf(obj: {
  apiVersion: string;
  kind: string;
  metadata: { namespace?: string; name: string };
}): ObjectIdentity {
  return { group: groupOf(obj.apiVersion), kind: obj.kind, namespace: obj.metadata.namespace, name: obj.metadata.name };
}

/** Identity from an objectKey (`apps/Deployment/default/nginx`, `/Namespace//demo`); undefined if malformed. */
export function identityFromKey(key: string): ObjectIdentity | undefined {
  const parts = key.split('/');
  if (parts.length !== 4 || !parts[1] || !parts[3]) return undefined;
  const [group, kind, namespace, name] = parts;
  return { group, kind, ...(namespace ? { namespace } : {}), name };
}

/** A selector value matches when absent, `*`, or equal. */
function selects(selector: string | undefined, value: string): boolean {
  return selector === undefined || selector === '*' || selector === value;
}

/** The JSON pointers `drift.ignore` protects on this object (deduplicated, in rule order). */
export function ignoredPointers(rules: readonly IgnoreRule[], obj: ObjectIdentity): string[] {
  const out: string[] = [];
  for (const rule of rules) {
    if (!selects(rule.group, obj.group)) continue;
    if (!selects(rule.kind, obj.kind)) continue;
    if (!selects(rule.namespace, obj.namespace ?? '')) continue;
    if (!selects(rule.name, obj.name)) continue;
    for (const p of rule.paths) if (!out.includes(p)) out.push(p);
  }
  return out;
}

/** True when `path` is `pointer` or lies below it (`/spec/replicas` is under `/spec`). */
export function isUnder(path: string, pointer: string): boolean {
  return path === pointer || path.startsWith(pointer.endsWith('/') ? pointer : pointer + '/');
}

/**
 * The patch without operations on ignored fields. Guard operations (`test`) only make sense beside
 * a write, so a patch left with nothing but tests is empty.
 */
export function withoutIgnored(patch: readonly JsonPatchOp[], pointers: readonly string[]): JsonPatchOp[] {
  const kept = patch.filter((op) => op.op === 'test' || !pointers.some((p) => isUnder(op.path, p)));
  return kept.some((op) => op.op !== 'test') ? kept : [];
}
