/**
 * The slice of the reconcile engine (src/agent/reconcile/engine.ts) that the runtime uses: apply a
 * sync unit, re-plan and re-apply one managed object, and hear about changes to managed objects.
 * The runtime depends on this interface only, so the session, sync loop and drift controller can
 * be tested against a recording double and wired to the real engine in commands/run.ts.
 */
import type { DriftIgnoreRule, ManifestFile, ManifestProjectConfig } from '../protocol/messages.js';
import type { Change, ChangeSet, JsonPatchOp, KubeObject } from './reconcile/types.js';

/** One manifest project at one commit, as the engine applies it (one inventory). */
export interface SyncUnit {
  /** Inventory name. */
  name: string;
  /** Namespace of the inventory ConfigMap. */
  namespace: string;
  files: ManifestFile[];
  config: ManifestProjectConfig;
  commit?: string;
  /**
   * `drift.ignore` rules: on objects that already exist, fields they select are left as they are
   * live (a create writes everything). The engine should pass `ignoredPointers(rules, object)`
   * (drift-policy.ts) to its plan, so the periodic re-sync does not undo what drift correction
   * deliberately leaves alone.
   */
  driftIgnore?: DriftIgnoreRule[];
}

/** A change the engine's watches saw on an object it manages. */
export interface ObjectEvent {
  /** Sync unit (inventory) name. */
  unit: string;
  /** objectKey of the object. */
  key: string;
  /** objectId (`Kind/namespace/name`). */
  id: string;
  type: 'changed' | 'deleted';
  /** The live object (for `deleted`, its last state). */
  live?: KubeObject;
}

/** What it would take to bring one object back to Git. */
export interface OnePlan {
  action: 'create' | 'patch' | 'none';
  patch: JsonPatchOp[];
}

export interface Reconciler {
  sync(unit: SyncUnit, options?: { signal?: AbortSignal }): Promise<ChangeSet>;
  onObjectEvent(listener: (event: ObjectEvent) => void): () => void;
  planOne(unit: string, key: string, options?: { ignore?: string[] }): Promise<OnePlan | undefined> | OnePlan | undefined;
  applyOne(unit: string, key: string, options?: { ignore?: string[] }): Promise<Change>;
  close(): Promise<void> | void;
}
