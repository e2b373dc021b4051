/**
 * The one canonical object id, `Kind/namespace/name` (`Kind/name` for cluster-scoped objects),
 * used in every log line, status entry and error about an object. API group is kept in a separate
 * key (`group`) so ids stay readable; `objectKey` includes it for maps that must not collide.
 */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

export function groupOf(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? '' : apiVersion.slice(0, slash);
}

/** Human id: `Deployment/default/nginx`, `Namespace/demo`. */
export function objectId(ref: { kind: string; namespace?: string; name: string }): string {
  return ref.namespace ? `${ref.kind}/${ref.namespace}/${ref.name}` : `${ref.kind}/${ref.name}`;
}

/** Unique key across API groups and versions: `apps/Deployment/default/nginx`, `/Namespace//demo`. */
export function objectKey(ref: ObjectRef): string {
  return `${groupOf(ref.apiVersion)}/${ref.kind}/${ref.namespace ?? ''}/${ref.name}`;
}
