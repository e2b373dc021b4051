/**
 * The pure decisions behind drift correction: who made a change (read from `managedFields`), and
 * when repeated reverts of one object are a fight with another controller that must be backed
 * off. No I/O and no clock: callers pass `now`. Which fields `drift.ignore` protects is
 * reconcile/ignore.ts (the periodic sync honours it too); Secret values are masked by
 * reconcile/report.ts, the one place that does.
 */
import type { JsonPatchOp, ManagedFieldsEntry } from './kube/types.js';
import { unescapePointerSegment } from './kube/json-pointer.js';

/**
 * Whether a managedFields `fieldsV1` set owns the field at `pointer`. List items are keyed by
 * `k:{…}` / `v:…` / `i:n` in fieldsV1 and by index in a patch, so below a list any ownership of the
 * list counts.
 */
export function ownsPath(fields: Record<string, unknown> | undefined, pointer: string): boolean {
  if (!fields) return false;
  let node: unknown = fields;
  for (const raw of pointer.split('/').slice(1)) {
    const seg = unescapePointerSegment(raw);
    if (/^(\d+|-)$/.test(seg)) return true;
    if (!node || typeof node !== 'object') return false;
    const next = (node as Record<string, unknown>)[`f:${seg}`];
    if (next === undefined) return false;
    node = next;
  }
  return true;
}

function timeOf(e: ManagedFieldsEntry): number {
  const t = e.time ? Date.parse(e.time) : NaN;
  return Number.isNaN(t) ? 0 : t;
}

/**
 * The field manager who most likely made a drift: among entries that are not ours and not a
 * subresource (status writers do not drift spec), the latest that owns one of the patched paths;
 * failing that, the latest one at all. Undefined when nobody else wrote the object.
 */
export function driftManager(
  entries: readonly ManagedFieldsEntry[] | undefined,
  ours: string,
  patch: readonly JsonPatchOp[],
): string | undefined {
  const others = (entries ?? []).filter((e) => e.manager && e.manager !== ours && !e.subresource);
  if (others.length === 0) return undefined;
  const byTime = [...others].sort((a, b) => timeOf(b) - timeOf(a));
  const paths = patch.filter((op) => op.op !== 'test').map((op) => op.path);
  const owner = byTime.find((e) => paths.some((p) => ownsPath(e.fieldsV1, p)));
  return (owner ?? byTime[0]).manager;
}

// ---- fights ----

export interface FightPolicy {
  /** Reverts of one object within `windowMs` that make a fight. */
  threshold: number;
  windowMs: number;
  /** First hold once a fight is detected; doubles each further revert in the fight. */
  baseHoldMs: number;
  capHoldMs: number;
  /** Quiet time after the last hold that ends a fight. */
  calmMs: number;
}

export const DEFAULT_FIGHT_POLICY: FightPolicy = {
  threshold: 5,
  windowMs: 30_000,
  baseHoldMs: 2_000,
  capHoldMs: 5 * 60_000,
  calmMs: 60_000,
};

export interface FightState {
  /** Times of recent reverts (within the window). */
  reverts: number[];
  /** 0 outside a fight; n ≥ 1 in the n-th hold of a fight. */
  level: number;
  /** No revert before this time. */
  holdUntil: number;
  lastRevertAt: number;
}

export const NO_FIGHT: FightState = Object.freeze({
  reverts: [],
  level: 0,
  holdUntil: 0,
  lastRevertAt: 0,
}) as FightState;

/** Milliseconds until a revert is allowed again (0 = now). */
export function holdRemaining(state: FightState, now: number): number {
  return Math.max(0, state.holdUntil - now);
}

export interface RevertDecision {
  state: FightState;
  /** This revert is part of a fight (report it as one and name the other manager). */
  fight: boolean;
  /** Hold imposed after this revert (0 when none). */
  holdMs: number;
}

/**
 * Record one revert at `now`. Once `threshold` reverts fall within `windowMs` the object is in a
 * fight: every further revert is followed by a hold that doubles up to `capHoldMs`, so a fighting
 * controller costs us one write per hold instead of one per event. A quiet `calmMs` ends the fight.
 */
export function recordRevert(
  state: FightState,
  now: number,
  policy: FightPolicy = DEFAULT_FIGHT_POLICY,
): RevertDecision {
  const calm = now - Math.max(state.lastRevertAt, state.holdUntil) > policy.calmMs;
  const level = calm ? 0 : state.level;
  const reverts = [...(calm ? [] : state.reverts.filter((t) => now - t < policy.windowMs)), now];
  if (level === 0 && reverts.length < policy.threshold) {
    return { state: { reverts, level: 0, holdUntil: 0, lastRevertAt: now }, fight: false, holdMs: 0 };
  }
  const nextLevel = level + 1;
  const holdMs = Math.min(policy.capHoldMs, policy.baseHoldMs * 2 ** Math.min(nextLevel - 1, 30));
  return { state: { reverts: [], level: nextLevel, holdUntil: now + holdMs, lastRevertAt: now }, fight: true, holdMs };
}
