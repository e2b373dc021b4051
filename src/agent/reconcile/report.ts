/**
 * The report stage: one closed vocabulary (`Action`) and one `ChangeSet` feed the command-line
 * output, logs, status messages and metrics. Secret values are masked here, before anything is
 * printed, logged or sent: every path that shows a patch or an object goes through these helpers.
 */
import type { StatusMessage } from '../../protocol/messages.js';
import type { Action, Change, ChangeSet, JsonPatchOp, KubeObject } from './types.js';
import { ACTIONS } from './types.js';
import { LAST_APPLIED_ANNOTATION } from './labels.js';
import { escapePointerSegment, isPlainObject } from './normalize.js';

/** What every masked value is replaced with. */
export const MASK = '***';

const LAST_APPLIED_POINTER = `/metadata/annotations/${escapePointerSegment(LAST_APPLIED_ANNOTATION)}`;

function maskValues(v: unknown): unknown {
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const k in v) out[k] = MASK;
    return out;
  }
  return MASK;
}

function isSecretPath(path: string): boolean {
  return path === '/data' || path.startsWith('/data/') || path === '/stringData' || path.startsWith('/stringData/') || path === LAST_APPLIED_POINTER;
}

function maskOps(patch: readonly JsonPatchOp[]): JsonPatchOp[] {
  return patch.map((op) => {
    if (!('value' in op)) return op;
    if (isSecretPath(op.path)) return { ...op, value: maskValues(op.value) };
    if (op.path === '/metadata/annotations' && isPlainObject(op.value) && LAST_APPLIED_ANNOTATION in op.value) {
      return { ...op, value: { ...op.value, [LAST_APPLIED_ANNOTATION]: MASK } };
    }
    if (op.path === '' && isPlainObject(op.value)) return { ...op, value: maskSecretObject(op.value as KubeObject) };
    return op;
  });
}

/**
 * A Secret's patch with every value under data/stringData (and kubectl's last-applied annotation,
 * which holds them too) replaced by `***`; other kinds' patches are returned as they are.
 * Also accepts `(patch, objectId)` where the kind is the id's first segment.
 */
export function maskSecretPatch(kind: string, patch: readonly JsonPatchOp[]): JsonPatchOp[];
export function maskSecretPatch(patch: readonly JsonPatchOp[], objectId: string): JsonPatchOp[];
export function maskSecretPatch(a: string | readonly JsonPatchOp[], b: string | readonly JsonPatchOp[]): JsonPatchOp[] {
  const [kind, patch] = typeof a === 'string' ? [a, b as readonly JsonPatchOp[]] : [(b as string).split('/')[0], a];
  return kind === 'Secret' ? maskOps(patch) : [...patch];
}

/** A copy of an object with a Secret's values masked (data, stringData, last-applied annotation). */
export function maskSecretObject(obj: KubeObject): KubeObject {
  if (obj.kind !== 'Secret') return obj;
  const out: KubeObject = { ...obj };
  if (obj.data !== undefined) out.data = maskValues(obj.data);
  if (obj.stringData !== undefined) out.stringData = maskValues(obj.stringData);
  const ann = obj.metadata?.annotations;
  if (ann && LAST_APPLIED_ANNOTATION in ann) out.metadata = { ...obj.metadata, annotations: { ...ann, [LAST_APPLIED_ANNOTATION]: MASK } };
  return out;
}

/** Counts per action, every action present (zeros included) so metrics and output are stable. */
export function summarize(changes: readonly Change[]): Record<Action, number> {
  const counts = Object.fromEntries(ACTIONS.map((a) => [a, 0])) as Record<Action, number>;
  for (const c of changes) counts[c.action]++;
  return counts;
}

/** One line per object, as `gitops-agent apply` prints it: `Deployment/default/nginx configured`. */
export function formatChangeLine(change: Change): string {
  const base = `${change.id} ${change.action}`;
  const why = change.error?.message ?? change.reason;
  if (!why || change.action === 'unchanged' || change.action === 'created' || change.action === 'configured') return base;
  return `${base}: ${why}`;
}

/** The summary line after the per-object lines: `3 created, 1 configured, 10 unchanged`. */
export function formatSummary(changes: readonly Change[]): string {
  const counts = summarize(changes);
  const parts = ACTIONS.filter((a) => counts[a] > 0).map((a) => `${counts[a]} ${a}`);
  return parts.length ? parts.join(', ') : 'no objects';
}

/** The per-object part of a status message. */
export function changeSetToStatusChanges(changeSet: ChangeSet): StatusMessage['changes'] {
  return changeSet.changes.map((c) => {
    const error = c.error?.message ?? (c.action === 'failed' ? c.reason : undefined);
    return error ? { id: c.id, action: c.action, error } : { id: c.id, action: c.action };
  });
}

/** The action a plan leads to when applied successfully. */
export function actionOfPlan(action: 'create' | 'patch' | 'none'): Action {
  return action === 'create' ? 'created' : action === 'patch' ? 'configured' : 'unchanged';
}
