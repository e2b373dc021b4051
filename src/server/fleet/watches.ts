/**
 * The Fleet's Git watches: ONE GitSource watch per (project, ref), however many agents follow it
 * and in whichever role (its config project, or a manifest project of its config), reference-
 * counted by those agents and closed when the last one leaves. This is the only place that
 * counts who follows a (project, ref); the Git source checks each watched pair and tells its one
 * listener.
 *
 * A watch keeps what every follower shares: the commit in force, the Git problem while it lasts,
 * and the per-commit memos of desired.ts (dropped when the commit moves on). Events go to the
 * role handlers of the Fleet, once per watch, with what changed (`hadProblem`, `repeated`).
 */
import { errorMessage, problemOf } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { ManifestFile, ProblemReport } from '../../protocol/messages.js';
import { ProblemCode } from '../../protocol/problems.js';
import {
  refKey,
  type CommitEvent,
  type DesiredEntry,
  type GitRef,
  type GitSource,
  type SourceErrorEvent,
  type SourceRecoverEvent,
} from '../ports.js';

/** Why an agent follows a watch. */
export type Role = 'config' | 'manifest';

export interface Watch {
  readonly key: string;
  readonly project: string;
  readonly ref: GitRef;
  /** The agents following it, per role. */
  readonly agents: Record<Role, Set<string>>;
  commit?: string;
  /** The Git problem in force (cleared by a good check). */
  problem?: ProblemReport;
  /** Set when the Git source refused to watch at all (a project id it cannot use). */
  failed?: ProblemReport;
  /** Stops the Git watch. */
  unwatch?: () => void;
  /** (globs, config) → desired entry, for `commit` only (desired.ts). */
  readonly desired: Map<string, Promise<DesiredEntry>>;
  /** globs → files, for `commit` only (desired.ts). */
  readonly files: Map<string, Promise<ManifestFile[]>>;
}

/** What the Fleet does when a watch it follows in a role changes. */
export interface RoleHandlers {
  /** A new commit (the memos are already dropped); `hadProblem`: the watch had a problem until now. */
  commit(w: Watch, e: CommitEvent, hadProblem: boolean): void;
  /** A Git problem; `repeated`: the same message as the problem already in force. */
  error(w: Watch, e: SourceErrorEvent, repeated: boolean): void;
  /** Readable again; `hadProblem`: there was a problem to clear. */
  recover(w: Watch, e: SourceRecoverEvent, hadProblem: boolean): void;
  /**
   * An agent subscribed while the watch has a problem (the Git source refused to watch, or the
   * last check failed): called once for it, after the caller is done.
   */
  joined(w: Watch, agentId: string, problem: ProblemReport): void;
}

/** Key of the shared watch of one (project, ref); a config project is always watched at its default branch. */
export function watchKey(project: string, ref: GitRef = {}): string {
  return `${project}\0${refKey(ref)}`;
}

const ROLES: readonly Role[] = ['config', 'manifest'];

export class Watches {
  private readonly watches = new Map<string, Watch>();

  constructor(
    private readonly git: Pick<GitSource, 'watch'>,
    private readonly log: Logger,
    private readonly handlers: Record<Role, RoleHandlers>,
  ) {}

  /** Number of Git watches (for tests and metrics). */
  get size(): number {
    return this.watches.size;
  }

  get(key: string): Watch | undefined {
    return this.watches.get(key);
  }

  /** Adds `agentId` as a follower of (project, ref) in `role`, starting the Git watch if it is the first. */
  subscribe(role: Role, project: string, ref: GitRef, agentId: string): Watch {
    const key = watchKey(project, ref);
    const w = this.watches.get(key) ?? this.open(key, project, ref);
    w.agents[role].add(agentId);
    const problem = w.problem;
    if (problem) {
      queueMicrotask(() => {
        if (w.agents[role].has(agentId) && w.problem === problem) this.handlers[role].joined(w, agentId, problem);
      });
    }
    return w;
  }

  /** Removes a follower; the Git watch stops with the last one of every role. */
  unsubscribe(role: Role, key: string, agentId: string): void {
    const w = this.watches.get(key);
    if (!w) return;
    w.agents[role].delete(agentId);
    if (w.agents.config.size + w.agents.manifest.size > 0) return;
    this.watches.delete(key);
    w.unwatch?.();
  }

  close(): void {
    for (const w of this.watches.values()) w.unwatch?.();
    this.watches.clear();
  }

  private open(key: string, project: string, ref: GitRef): Watch {
    const w: Watch = {
      key,
      project,
      ref,
      agents: { config: new Set(), manifest: new Set() },
      desired: new Map(),
      files: new Map(),
    };
    this.watches.set(key, w);
    const live = (): boolean => this.watches.get(key) === w;
    try {
      w.unwatch = this.git.watch(
        project,
        ref,
        (e) => {
          if (live()) this.onCommit(w, e);
        },
        (e) => {
          if (live()) this.onError(w, e);
        },
        (e) => {
          if (live()) this.onRecover(w, e);
        },
      );
    } catch (err) {
      // The Git source refuses the project outright (config.ts and the Fleet check ids first, so
      // this is a last line): the problem goes to the agents that asked, nothing is watched.
      const { code } = problemOf(err, ProblemCode.GIT_ERROR);
      w.failed = { code, message: `${project}: cannot be watched: ${errorMessage(err)}` };
      w.problem = w.failed;
      this.log.warn({ project, code, problem: w.failed.message }, 'project cannot be watched');
    }
    return w;
  }

  private onCommit(w: Watch, e: CommitEvent): void {
    if (w.commit === e.commit) return;
    w.commit = e.commit;
    w.desired.clear();
    w.files.clear();
    const hadProblem = w.problem !== undefined;
    w.problem = undefined;
    for (const role of ROLES) if (w.agents[role].size) this.handlers[role].commit(w, e, hadProblem);
  }

  private onError(w: Watch, e: SourceErrorEvent): void {
    const repeated = w.problem?.message === e.problem.message;
    w.problem = e.problem;
    for (const role of ROLES) if (w.agents[role].size) this.handlers[role].error(w, e, repeated);
  }

  private onRecover(w: Watch, e: SourceRecoverEvent): void {
    const hadProblem = w.problem !== undefined;
    w.problem = undefined;
    for (const role of ROLES) if (w.agents[role].size) this.handlers[role].recover(w, e, hadProblem);
  }
}
