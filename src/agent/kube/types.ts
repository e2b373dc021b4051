/**
 * Kubernetes' own shapes as the agent handles them: objects (from Git and from the API server),
 * their metadata and managedFields, RFC 6902 JSON patches, and what discovery knows about a kind.
 * No behaviour; every layer of the agent (kube/, reconcile/, drift, leader election) uses these.
 */

export interface ManagedFieldsEntry {
  manager?: string;
  operation?: string;
  apiVersion?: string;
  time?: string;
  fieldsType?: string;
  fieldsV1?: Record<string, unknown>;
  subresource?: string;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  managedFields?: ManagedFieldsEntry[];
  ownerReferences?: Array<Record<string, unknown>>;
  finalizers?: string[];
  [key: string]: unknown;
}

/** Any Kubernetes object. Fields beyond apiVersion/kind/metadata stay untyped JSON. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** RFC 6902 operation. */
export type JsonPatchOp =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'move' | 'copy'; from: string; path: string };

/** What discovery knows about a kind. */
export interface ResourceInfo {
  group: string;
  version: string;
  kind: string;
  /** Plural resource name used in URLs (`deployments`). */
  plural: string;
  namespaced: boolean;
}
