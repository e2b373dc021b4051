/**
 * The report stage, the one place that turns a `ChangeSet` into what people and the server read:
 * the command-line lines, the log fields of an apply, the per-object part of a status and its
 * result. Secret values are masked here and nowhere else, before anything is printed, logged or
 * sent: the engine masks every change's patch and the drift controller every drift patch with
 * `maskSecretPatch`. Wire shapes are the runner's business; this module returns plain values.
 */
import type { Action, ApplyResult } from '../../protocol/vocabulary.js';
import { ProblemCode } from '../../protocol/problems.js';
import type { Problem } from '../../common/errors.js';
import type { Change, ChangeSet } from './types.js';
import type { JsonPatchOp, KubeObject } from '../kube/types.js';
import { LAST_APPLIED_ANNOTATION } from './labels.js';
import { isPlainObject } from './normalize.js';
import { escapePointerSegment } from '../kube/json-pointer.js';

/** What every masked value is replaced with. */
export const MASK = '***';

const ANNOTATIONS_POINTER = '/metadata/annotations';
const LAST_APPLIED_POINTER = `${ANNOTATIONS_POINTER}/${escapePointerSegment(LAST_APPLIED_ANNOTATION)}`;

function maskValues(v: unknown): unknown {
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const k in v) out[k] = MASK;
    return out;
  }
  return MASK;
}

function under(path: string, pointer: string): boolean {
  return path === pointer || path.startsWith(`${pointer}/`);
}

/** The annotations with kubectl's last-applied copy (which holds every value) masked. */
function maskAnnotations(annotations: unknown): unknown {
  if (!isPlainObject(annotations) || !(LAST_APPLIED_ANNOTATION in annotations)) return annotations;
  return { ...annotations, [LAST_APPLIED_ANNOTATION]: MASK };
}

/** A Secret patch operation's value with every secret in it masked, wherever the op points. */
function maskValueAt(path: string, value: unknown): unknown {
  if (under(path, '/data') || under(path, '/stringData') || under(path, LAST_APPLIED_POINTER)) return maskValues(value);
  if (path === ANNOTATIONS_POINTER) return maskAnnotations(value);
  if (path === '/metadata' && isPlainObject(value) && 'annotations' in value)
    return { ...value, annotations: maskAnnotations(value.annotations) };
  if (path === '' && isPlainObject(value)) return maskSecretObject({ ...(value as KubeObject), kind: 'Secret' });
  return value;
}

/**
 * A Secret's patch with every value under data/stringData and kubectl's last-applied annotation
 * (which holds them too) replaced by `***`, whether an op writes the field, a parent of it or the
 * whole object; patches of other kinds are returned as they are (copied).
 */
export function maskSecretPatch(kind: string, patch: readonly JsonPatchOp[]): JsonPatchOp[] {
  if (kind !== 'Secret') return [...patch];
  return patch.map((op) => ('value' in op ? { ...op, value: maskValueAt(op.path, op.value) } : op));
}

/** A copy of an object with a Secret's values masked (data, stringData, last-applied annotation). */
export function maskSecretObject(obj: KubeObject): KubeObject {
  if (obj.kind !== 'Secret') return obj;
  const out: KubeObject = { ...obj };
  if (obj.data !== undefined) out.data = maskValues(obj.data);
  if (obj.stringData !== undefined) out.stringData = maskValues(obj.stringData);
  const ann = obj.metadata?.annotations;
  if (ann && LAST_APPLIED_ANNOTATION in ann)
    out.metadata = { ...obj.metadata, annotations: maskAnnotations(ann) as Record<string, string> };
  return out;
}

/** A change with its patch masked (the kind is the id's first segment). */
export function maskChange(change: Change): Change {
  return change.patch ? { ...change, patch: maskSecretPatch(change.id.split('/')[0], change.patch) } : change;
}

/** Why an object was skipped or failed, for people; undefined for the other actions. */
function whyOf(change: Change): string | undefined {
  if (change.action === 'unchanged' || change.action === 'created' || change.action === 'configured') return undefined;
  return change.error?.message ?? change.reason;
}

/**
 * One line per object, as `gitops-agent apply` prints it and the `applied` log line lists it:
 * `Deployment/default/nginx configured`, with the reason after a colon for pruned, skipped and
 * failed objects.
 */
export function formatChangeLine(change: Change): string {
  const base = `${change.id} ${change.action}`;
  const why = whyOf(change);
  return why ? `${base}: ${why}` : base;
}

/**
 * `gitops-agent apply`'s output: one line per object (marked when it was a server dry run) on
 * stdout, then the problems not tied to one object on stderr.
 */
export function applyOutput(set: ChangeSet): { out: string[]; err: string[] } {
  const out = set.changes.map((c) =>
    set.dryRun ? formatChangeLine(c).replace(` ${c.action}`, ` ${c.action} (server dry run)`) : formatChangeLine(c),
  );
  return { out, err: set.errors.map((e) => `error: ${e.message}`) };
}

const DIFF_HEADINGS: Record<Exclude<Action, 'unchanged'>, string> = {
  created: 'would be created',
  configured: 'would change',
  pruned: 'would be pruned',
  // Apply leaves it as it is live although Git says otherwise: not in sync, and not by apply.
  skipped: 'would be skipped, not converged',
  failed: 'rejected',
};

/**
 * `gitops-agent diff`'s text for a server dry run: every object an apply would not leave as it is
 * or could not converge, with the patch it would send, or the reason it would skip or fail (the
 * words apply prints).
 */
export function formatDiff(changes: readonly Change[]): string[] {
  const lines: string[] = [];
  for (const c of changes) {
    if (c.action === 'unchanged') continue;
    lines.push(`--- ${c.id} (${DIFF_HEADINGS[c.action]})`);
    const why = c.action === 'skipped' || c.action === 'failed' ? whyOf(c) : undefined;
    if (why) lines.push(`    ${why}`);
    for (const op of c.patch ?? []) lines.push(`    ${JSON.stringify(op)}`);
  }
  return lines;
}

/**
 * What `gitops-agent diff` reports of a dry run: the objects to show, and its exit status, as
 * `kubectl diff`: 0 only when an apply would be a no-op and leave everything as Git says, 1 when
 * anything differs or would not converge (skipped objects included: a user must not read
 * "owned by another inventory" as "in sync"), 2 when the set or an object was rejected.
 */
export function diffOutcome(set: Pick<ChangeSet, 'changes' | 'errors'>): { shown: Change[]; exitCode: 0 | 1 | 2 } {
  const shown = set.changes.filter((c) => c.action !== 'unchanged');
  if (set.errors.length || shown.some((c) => c.action === 'failed')) return { shown, exitCode: 2 };
  return { shown, exitCode: shown.length ? 1 : 0 };
}

/** The lines of every object that changed (the `changes` field of the apply log lines). */
export function changeLines(set: ChangeSet): string[] {
  return set.changes.filter((c) => c.action !== 'unchanged').map(formatChangeLine);
}

/**
 * An apply's outcome: applied when nothing failed, partial when some objects made it, else failed.
 * An object skipped because a depends-on dependency was not current yet counts as not applied:
 * the commit is not all there, so the runner retries it (with back-off) instead of waiting for a
 * health that would call it healthy without that object.
 */
export function resultOf(set: ChangeSet): ApplyResult {
  const failed = set.changes.filter(
    (c) => c.action === 'failed' || (c.action === 'skipped' && c.error?.code === ProblemCode.DEPENDENCY_NOT_READY),
  ).length;
  if (failed === 0 && set.errors.length === 0) return 'applied';
  return failed > 0 && set.changes.length > failed ? 'partial' : 'failed';
}

/** One object of a status: skipped and failed objects carry why, and the problem code when known. */
export interface StatusChange {
  id: string;
  action: Action;
  error?: string;
  /** The object's own problem code (protocol 2; the session leaves it out for a version-1 server). */
  code?: string;
}

/** The per-object part of a status. */
export function statusChanges(set: ChangeSet): StatusChange[] {
  return set.changes.map((c) =>
    c.action === 'failed' || c.action === 'skipped'
      ? {
          id: c.id,
          action: c.action,
          error: c.error?.message ?? c.reason ?? 'failed',
          ...(c.error?.code ? { code: c.error.code } : {}),
        }
      : { id: c.id, action: c.action },
  );
}

/** Most problems named in one 'apply failed' line (the status carries all of them). */
export const MAX_LOGGED_PROBLEMS = 10;

/**
 * Why an apply failed, for its log line: the unit's own problems and then each failed object's,
 * so a failure that is only per object (every object refused with EACCES, say) still names its
 * cause instead of logging `errors: []`.
 */
export function failureProblems(set: ChangeSet): { cause: string; problems: Problem[]; more: number } {
  const perObject = set.changes
    .filter((c) => c.action === 'failed')
    .map(
      (c) =>
        c.error ?? {
          code: ProblemCode.APPLY_FAILED,
          message: c.reason?.startsWith(c.id) ? c.reason : `${c.id}: ${c.reason ?? 'failed'}`,
          object: c.id,
        },
    );
  const all: Problem[] = [...set.errors, ...perObject];
  return {
    cause: all[0]?.message ?? 'unknown',
    problems: all.slice(0, MAX_LOGGED_PROBLEMS),
    more: Math.max(0, all.length - MAX_LOGGED_PROBLEMS),
  };
}
