/**
 * The slice of the reconcile engine (src/agent/reconcile/engine.ts) that the runtime uses: apply a
 * sync unit, re-plan and re-apply one managed object, and hear about changes to managed objects.
 * The runtime depends on this interface only, so the session, sync loop and drift controller can
 * be tested against a recording double and wired to the real engine in commands/run.ts. Its
 * input, `SyncUnit`, is reconcile/types.ts's: the runner maps the wire's desired state onto it.
 */
import type { Change, ChangeSet, SyncUnit } from './reconcile/types.js';
import type { JsonPatchOp, KubeObject } from './kube/types.js';
import type { HealthReport } from './health/types.js';

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
  planOne(
    unit: string,
    key: string,
    options?: { ignore?: string[] },
  ): Promise<OnePlan | undefined> | OnePlan | undefined;
  applyOne(unit: string, key: string, options?: { ignore?: string[] }): Promise<Change>;
  close(): Promise<void> | void;
}

/**
 * Health of what a unit applied, followed from the watch caches (no polling): the engine
 * implements it with src/agent/health/tracker.ts; the runner waits on it after each apply, as
 * GitLab's agent waited for `reconcile_timeout`.
 */
export interface HealthFollower {
  /**
   * Follows the objects the unit's last sync applied until all are current (`healthy`), one is
   * failed (`degraded`) or `timeoutMs` passes (`timed_out`, the objects still in progress named);
   * objects the last sync pruned are followed until gone or `pruneTimeoutMs`. An aborted signal
   * (a newer commit, lost leadership) resolves at once with the report as it stands
   * (`progressing`). `timeoutMs` 0 resolves at once with the current report.
   */
  waitHealth(
    unit: string,
    options: { timeoutMs: number; pruneTimeoutMs: number; signal?: AbortSignal },
  ): Promise<HealthReport>;
  /** The unit's health now (undefined before its first sync). */
  health(unit: string): HealthReport | undefined;
  /**
   * Called once per change of a unit's result or of any object's state or reason (not per
   * watch event), during a wait and after it settled (a pod that starts crash-looping later).
   */
  onHealthChange(listener: (report: HealthReport) => void): () => void;
  /** Stops following a unit the configuration no longer names (its objects stay; its pod watches end). */
  forget(unit: string): void;
}
