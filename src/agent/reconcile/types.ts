/**
 * The types every reconcile stage shares: objects as they come from Git and from the API server,
 * the closed action vocabulary, and the change set that feeds output, logs, status and metrics.
 */
import type { ProblemReport } from '../../protocol/messages.js';
import type { Action } from '../../protocol/vocabulary.js';

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

/** Where an object came from in Git: file path relative to the manifest root, 1-based line. */
export interface SourceRef {
  file: string;
  line: number;
}

export interface ParsedObject {
  object: KubeObject;
  source: SourceRef;
}

/** What discovery knows about a kind. */
export interface ResourceInfo {
  group: string;
  version: string;
  kind: string;
  /** Plural resource name used in URLs (`deployments`). */
  plural: string;
  namespaced: boolean;
}

/** A parsed object after discovery: namespace defaulted, resource known. */
export interface ResolvedObject extends ParsedObject {
  /** Canonical `Kind/namespace/name`. */
  id: string;
  /** Unique across groups: see objectKey. */
  key: string;
  resource: ResourceInfo;
}


export interface Change {
  id: string;
  action: Action;
  source?: SourceRef;
  /** The JSON patch sent (or that would be sent), Secret values masked. */
  patch?: JsonPatchOp[];
  /** Why an object was skipped or failed, for people. */
  reason?: string;
  error?: ProblemReport;
}

export interface ChangeSet {
  /** Sync unit (inventory) name. */
  unit: string;
  commit?: string;
  changes: Change[];
  /** Problems not tied to one object (parse errors, discovery failures). */
  errors: ProblemReport[];
  durationMs: number;
  dryRun: boolean;
}
