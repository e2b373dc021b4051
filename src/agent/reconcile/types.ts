/**
 * The types every reconcile stage shares: where an object came from in Git, an object after
 * discovery, and the change set that feeds output, logs, status and metrics. Kubernetes' own
 * shapes are in ../kube/types.ts, the action words in src/protocol/vocabulary.ts.
 */
import type { Problem } from '../../common/errors.js';
import type { Action } from '../../protocol/vocabulary.js';
import type { DryRunStrategy, InventoryPolicy, PropagationPolicy } from '../../protocol/vocabulary.js';
import type { KubeObject, JsonPatchOp, ResourceInfo } from '../kube/types.js';
import type { IgnoreRule } from './ignore.js';

/** Where an object came from in Git: file path relative to the manifest root, 1-based line. */
export interface SourceRef {
  file: string;
  line: number;
}

export interface ParsedObject {
  object: KubeObject;
  source: SourceRef;
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
  error?: Problem;
}

export interface ChangeSet {
  /** Sync unit (inventory) name. */
  unit: string;
  commit?: string;
  changes: Change[];
  /** Problems not tied to one object (parse errors, discovery failures). */
  errors: Problem[];
  durationMs: number;
  dryRun: boolean;
}

/** A manifest file: path relative to the manifest root, and its text. */
export interface SourceFile {
  path: string;
  content: string;
}

/** The settings of a manifest project the engine acts on (the wire's ManifestProjectConfig has more). */
export interface UnitConfig {
  defaultNamespace: string;
  /** `server`: dry-run the whole set before writing anything. */
  dryRunStrategy: DryRunStrategy;
  prune: boolean;
  prunePropagationPolicy: PropagationPolicy;
  inventoryPolicy: InventoryPolicy;
  /**
   * How long a depends-on wait inside a sync may take (an object's dependencies becoming
   * current before it is applied); undefined: bounded only by the sync's abort signal. The
   * runner passes GitLab's `reconcile_timeout`, which also bounds its health wait after the sync.
   */
  reconcileTimeoutMs?: number;
}

/** One manifest project at one commit, as the engine applies it (one inventory). */
export interface SyncUnit {
  /** Inventory name. */
  name: string;
  /** Namespace of the inventory ConfigMap. */
  namespace: string;
  files: SourceFile[];
  config: UnitConfig;
  commit?: string;
  /**
   * `drift.ignore` rules: on objects that already exist, fields they select are left as they are
   * live (a create writes everything), so the periodic re-sync does not undo what drift
   * correction deliberately leaves alone (ignore.ts).
   */
  driftIgnore?: IgnoreRule[];
}
