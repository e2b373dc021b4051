/**
 * The sync loop: per manifest project it keeps the latest desired state and applies it with the
 * engine, one apply at a time. A newer commit arriving during an apply aborts it (the engine stops
 * after the object in flight) and the newest is applied next; whatever the aborted run had already
 * written is owned by the inventory, so the next apply prunes or keeps it as Git says. Each
 * finished apply is logged (`applied` with the object actions), counted and reported as `status`.
 * Failed applies are retried with capped backoff; `resyncAll` is the periodic safety net.
 * Only the active replica (the Lease holder) applies.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../common/logger.js';
import { errorMessage, GitopsError, problemOf } from '../common/errors.js';
import { ProblemCode } from '../protocol/problems.js';
import type { DriftIgnoreRule, ProblemReport, StatusMessage } from '../protocol/messages.js';
import { backoffDelay, type BackoffPolicy } from './backoff.js';
import type { AgentMetrics } from './metrics.js';
import type { ChangeSet, SyncUnit } from './reconcile/types.js';
import { changeLines, failureProblems, resultOf, statusChanges } from './reconcile/report.js';
import type { Reconciler } from './reconciler.js';
import type { DesiredState } from './state.js';

/** An error's message followed by its causes (`a: b: c`), repeated text left out. */
export function messageWithCauses(err: unknown): string {
  const parts: string[] = [];
  for (
    let e: unknown = err, depth = 0;
    e !== undefined && e !== null && depth < 5;
    e = (e as { cause?: unknown }).cause, depth++
  ) {
    const text = errorMessage(e);
    if (text && !parts.some((p) => p.includes(text))) parts.push(text);
    if (!(e instanceof Error)) break;
  }
  return parts.join(': ');
}

/** Retry delays after a failed apply: 2 s growing to 2 min. */
export const APPLY_RETRY_BACKOFF: BackoffPolicy = { baseMs: 2_000, capMs: 120_000, minMs: 1_000 };

/**
 * Inventory name for a project of an agent: a DNS-1123 name unique per (agent, project). The
 * project slug keeps it readable; the hash keeps two projects whose slugs collide apart.
 */
export function unitName(agentId: string, project: string): string {
  const slug = project
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 38)
    .replace(/-+$/, '');
  const hash = createHash('sha256').update(project).digest('hex').slice(0, 8);
  return `gitops-${agentId.slice(0, 8)}-${slug || 'project'}-${hash}`;
}

/** The status message for a finished apply: the wire form of report.ts's verdicts. */
export function statusOf(desired: DesiredState, set: ChangeSet): StatusMessage {
  return {
    type: 'status',
    project: desired.project,
    commit: desired.commit,
    digest: desired.digest,
    result: resultOf(set),
    changes: statusChanges(set),
    errors: set.errors,
    durationMs: Math.max(0, Math.round(set.durationMs)),
  };
}

export interface SyncLoopOptions {
  engine: Pick<Reconciler, 'sync'>;
  /** Inventory name for a project. */
  unitName: (project: string) => string;
  logger: Logger;
  metrics?: AgentMetrics;
  /** Sends (or buffers) a status report for the server. */
  report: (status: StatusMessage) => void;
  retry?: BackoffPolicy;
  /** Called when a unit finished its apply(s) and is idle (drift events held back meanwhile can be handled). */
  onIdle?: (unit: string) => void;
  /** Current `drift.ignore` rules, passed to every sync. */
  driftIgnore?: () => DriftIgnoreRule[];
}

interface ProjectSlot {
  unit: string;
  desired?: DesiredState;
  /** A (re)apply is wanted. */
  dirty: boolean;
  running?: { digest: string; commit: string; abort: AbortController; done: Promise<void> };
  failures: number;
  retryTimer?: NodeJS.Timeout;
  applied?: { commit: string; digest: string };
}

export class SyncLoop {
  private readonly opts: SyncLoopOptions;
  private readonly slots = new Map<string, ProjectSlot>();
  private readonly units = new Map<string, string>();
  private active = false;
  private closed = false;

  constructor(options: SyncLoopOptions) {
    this.opts = options;
  }

  /** Takes a project's newest desired state; supersedes an apply of an older one in flight. */
  setDesired(desired: DesiredState): void {
    const slot = this.slot(desired.project);
    slot.desired = desired;
    if (slot.running && slot.running.digest === desired.digest) return;
    slot.dirty = true;
    if (slot.running) {
      this.opts.logger.info(
        { project: desired.project, commit: slot.running.commit, by: desired.commit },
        'apply superseded by a newer commit',
      );
      slot.running.abort.abort(
        new GitopsError('transient', ProblemCode.SUPERSEDED, `superseded by commit ${desired.commit}`),
      );
    }
    this.kick(desired.project, slot);
  }

  /** Stops enforcing a project the configuration no longer names (its objects stay as they are). */
  remove(project: string): void {
    const slot = this.slots.get(project);
    if (!slot) return;
    clearTimeout(slot.retryTimer);
    slot.running?.abort.abort();
    this.slots.delete(project);
    this.units.delete(slot.unit);
    this.opts.metrics?.forgetProject(project);
  }

  /** Leadership: only the active replica applies. Becoming active applies every project. */
  setActive(active: boolean): void {
    if (this.active === active) return;
    this.active = active;
    for (const [project, slot] of this.slots) {
      if (active) {
        slot.dirty = true;
        this.kick(project, slot);
      } else {
        clearTimeout(slot.retryTimer);
        slot.running?.abort.abort();
      }
    }
  }

  get isActive(): boolean {
    return this.active;
  }

  /** The periodic safety net: re-apply every project that is not busy. */
  resyncAll(): void {
    for (const [project, slot] of this.slots) {
      if (slot.running) continue;
      slot.dirty = true;
      this.kick(project, slot);
    }
  }

  /** Project and desired commit of a unit, for drift reports. */
  unitInfo(unit: string): { project: string; commit: string; digest: string } | undefined {
    const project = this.units.get(unit);
    const desired = project === undefined ? undefined : this.slots.get(project)?.desired;
    return desired ? { project: desired.project, commit: desired.commit, digest: desired.digest } : undefined;
  }

  /** True while a unit is applying or about to (drift waits: the apply itself reconciles). */
  isBusy(unit: string): boolean {
    const project = this.units.get(unit);
    const slot = project === undefined ? undefined : this.slots.get(project);
    return !!slot && (!!slot.running || (slot.dirty && this.active));
  }

  /** Last successfully applied commit per project. */
  applied(): Record<string, { commit: string; digest: string }> {
    const out: Record<string, { commit: string; digest: string }> = {};
    for (const [project, slot] of this.slots) if (slot.applied) out[project] = slot.applied;
    return out;
  }

  /** Resolves when no apply is running (tests and shutdown). */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.slots.values()].map((s) => s.running?.done).filter((p): p is Promise<void> => !!p);
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  /** Aborts applies in flight and waits for them. */
  async close(): Promise<void> {
    this.closed = true;
    for (const slot of this.slots.values()) {
      clearTimeout(slot.retryTimer);
      slot.running?.abort.abort();
    }
    await this.idle();
  }

  private slot(project: string): ProjectSlot {
    let slot = this.slots.get(project);
    if (!slot) {
      slot = { unit: this.opts.unitName(project), dirty: false, failures: 0 };
      this.slots.set(project, slot);
      this.units.set(slot.unit, project);
    }
    return slot;
  }

  private kick(project: string, slot: ProjectSlot): void {
    if (this.closed || !this.active || slot.running || !slot.dirty || !slot.desired) return;
    if (this.slots.get(project) !== slot) return;
    clearTimeout(slot.retryTimer);
    slot.retryTimer = undefined;
    slot.dirty = false;
    const desired = slot.desired;
    const abort = new AbortController();
    const done = this.apply(slot, desired, abort.signal).finally(() => {
      slot.running = undefined;
      this.kick(project, slot);
      if (!slot.running && !this.closed) this.opts.onIdle?.(slot.unit);
    });
    slot.running = { digest: desired.digest, commit: desired.commit, abort, done };
  }

  private async apply(slot: ProjectSlot, desired: DesiredState, abort: AbortSignal): Promise<void> {
    const log = this.opts.logger.child({ project: desired.project });
    const timeout =
      desired.config.reconcileTimeoutMs > 0 ? AbortSignal.timeout(desired.config.reconcileTimeoutMs) : undefined;
    const signal = timeout ? AbortSignal.any([abort, timeout]) : abort;
    const unit: SyncUnit = {
      name: slot.unit,
      namespace: desired.config.defaultNamespace,
      files: desired.files,
      config: desired.config,
      commit: desired.commit,
    };
    const ignore = this.opts.driftIgnore?.() ?? [];
    if (ignore.length) unit.driftIgnore = ignore;
    let set: ChangeSet;
    try {
      set = await this.opts.engine.sync(unit, { signal });
    } catch (err) {
      if (abort.aborted) return; // superseded, lost leadership or shutting down: the newest state is applied next
      // The cause chain: a wrapped EACCES or ECONNREFUSED is what a person needs to read.
      const problem: ProblemReport = { ...problemOf(err, ProblemCode.APPLY_ERROR), message: messageWithCauses(err) };
      set = { unit: slot.unit, commit: desired.commit, changes: [], errors: [problem], durationMs: 0, dryRun: false };
    }
    if (abort.aborted) return;
    const status = statusOf(desired, set);
    this.opts.metrics?.recordApply(
      desired.project,
      status.result,
      set.changes.map((c) => c.action),
      set.durationMs,
    );
    this.opts.report(status);
    const fields = {
      commit: desired.commit,
      changes: changeLines(set),
      unchanged: set.changes.filter((c) => c.action === 'unchanged').length,
      durationMs: status.durationMs,
    };
    if (status.result === 'applied') {
      slot.failures = 0;
      slot.applied = { commit: desired.commit, digest: desired.digest };
      log.info(fields, 'applied');
      return;
    }
    const retryInMs = backoffDelay(this.opts.retry ?? APPLY_RETRY_BACKOFF, slot.failures++);
    const why = failureProblems(set);
    log.warn(
      {
        ...fields,
        result: status.result,
        cause: why.cause,
        errors: why.problems,
        ...(why.more ? { moreErrors: why.more } : {}),
        retryInMs,
      },
      'apply failed',
    );
    slot.retryTimer = setTimeout(() => {
      slot.dirty = true;
      this.kick(desired.project, slot);
    }, retryInMs);
    slot.retryTimer.unref();
  }
}
