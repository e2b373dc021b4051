/**
 * The one canonical object id, `Kind/namespace/name` (`Kind/name` for cluster-scoped objects),
 * used in every log line, status entry and error about an object. API group is kept in a separate
 * key (`group`) so ids stay readable; `objectKey` includes it for maps that must not collide.
 * Also the one place an `apiVersion` is split (`splitApiVersion`, `gvkOf`).
 */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

export interface GroupVersionKind {
  /** API group, `''` for the core group. */
  group: string;
  version: string;
  kind: string;
}

/** Splits `apps/v1` into group and version (`v1` → core group `''`). */
export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.indexOf('/');
  return slash < 0
    ? { group: '', version: apiVersion }
    : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

export function groupOf(apiVersion: string): string {
  return splitApiVersion(apiVersion).group;
}

/** Group, version and kind of an object (or of an apiVersion and kind). */
export function gvkOf(obj: { apiVersion: string; kind: string }): GroupVersionKind {
  return { ...splitApiVersion(obj.apiVersion), kind: obj.kind };
}

/** The map key of a kind: `apps/v1/Deployment`, `/v1/Service`. */
export function gvkKey(gvk: GroupVersionKind): string {
  return `${gvk.group}/${gvk.version}/${gvk.kind}`;
}

/** Human id: `Deployment/default/nginx`, `Namespace/demo`. */
export function objectId(ref: { kind: string; namespace?: string; name: string }): string {
  return ref.namespace ? `${ref.kind}/${ref.namespace}/${ref.name}` : `${ref.kind}/${ref.name}`;
}

/** Unique key across API groups and versions: `apps/Deployment/default/nginx`, `/Namespace//demo`. */
export function objectKey(ref: ObjectRef): string {
  return `${groupOf(ref.apiVersion)}/${ref.kind}/${ref.namespace ?? ''}/${ref.name}`;
}
