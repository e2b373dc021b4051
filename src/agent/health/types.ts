/**
 * The shapes of health every layer shares: one object's health (status.ts computes it, pure),
 * and a unit's health report (tracker.ts follows it from the watch caches; the runner sends it
 * as the `health` frame, the CLI prints it). Words from src/protocol/vocabulary.ts.
 */
import type { HealthResult, HealthState } from '../../protocol/vocabulary.js';

/** One object's health with what a person can act on. */
export interface ObjectHealth {
  state: HealthState;
  /** Short machine-friendly cause: `Available`, `ImagePullBackOff`, `BackoffLimitExceeded`, `Established`. */
  reason: string;
  /** For people: "2/3 replicas available", "ImagePullBackOff: Back-off pulling image ...". */
  message: string;
}

/** One followed object in a report. */
export interface ObjectHealthEntry extends ObjectHealth {
  /** objectId (`Kind/namespace/name`, group-qualified for non-core kinds). */
  id: string;
  /** True for an object pruned by this commit (followed until gone). */
  pruned?: boolean;
}

/** A unit's (manifest project's) health at one commit. */
export interface HealthReport {
  unit: string;
  commit?: string;
  result: HealthResult;
  /** Every followed object, failed first, then in_progress/terminating, then the rest. */
  objects: ObjectHealthEntry[];
  /** When the result was reached (ms since epoch); absent while progressing. */
  settledAt?: number;
  /** Milliseconds from the end of the apply to the result (absent while progressing). */
  waitedMs?: number;
}
