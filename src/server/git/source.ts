/**
 * The server's GitSource: follows (project, ref) pairs, each for one listener, with one check per
 * pair and one poll timer per project, plus immediate checks on webhooks with concurrent refreshes
 * coalesced. Sharing a pair among agents is the Fleet's (fleet/watches.ts: 10,000 agents on one
 * manifest project are one watch here, one fetch). A new commit (also a force-push to an older or
 * unrelated one) goes to the listener; a failure (unreachable host, deleted branch, bad token)
 * goes to `onError` once per distinct problem while the last good commit stays in force, and the
 * first good check after it goes to `onRecover` (even with the same commit, so nobody keeps
 * showing a stale error). Reads at a commit are memoised, trees by id, so reading one file for
 * each of 10,000 agents walks each shared tree once.
 */
import { mkdir } from 'node:fs/promises';
import { errorMessage, problemOf, UserError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { silentLogger } from '../../common/logger.js';
import { BoundedMap } from '../../common/map-limit.js';
import type { ManifestFile, ProblemReport } from '../../protocol/messages.js';
import { ProblemCode } from '../../protocol/problems.js';
import {
  refKey,
  type CommitEvent,
  type GitRef,
  type GitSource,
  type SourceErrorEvent,
  type SourceRecoverEvent,
} from '../ports.js';
import { LocalBackend, RemoteBackend, checkProjectId, describeRef, type GitBackend } from './backends.js';
import { createGitHttpClient } from './http.js';
import { startPollTimer, type PollTimer } from './poll-timer.js';
import { ByteBudget } from './byte-budget.js';
import {
  DEFAULT_READ_LIMITS,
  findFileId,
  readMatchingFiles,
  readOneFile,
  treeReader,
  type ReadLimits,
  type TreeEntry,
  type TreeReader,
} from './read.js';

/** Log message for a new commit on a watched ref (fields: project, commit, ref). */
export const DETECTED_COMMIT = 'detected commit';
/** Log message for a Git problem on a watched ref (fields: project, ref, code, error). */
export const GIT_PROBLEM = 'git source problem';
/** Log message when a watched ref is readable again (fields: project, ref, commit, cleared). */
export const GIT_RECOVERED = 'git source recovered';

export interface GitSourceOptions {
  /** Remote mode: base URL of the Git host; project `group/name` is `<baseUrl>/group/name.git`. */
  baseUrl?: string;
  /** Remote mode: access token (read from --git-token-file by options.ts), sent as basic auth `oauth2:<token>`. */
  token?: string;
  /** Remote mode: folder for cached clones (e.g. `<state-dir>/git`). */
  cacheDir?: string;
  /** Local mode: folder holding `<project>.git` or `<project>` repositories, read in place. */
  root?: string;
  /** How often each watched project is checked (default 15 s). */
  pollIntervalMs?: number;
  /** Per-file and total size limits for readFiles (defaults 5 MiB and 20 MiB, as GitLab): the budget of one read. */
  limits?: Partial<ReadLimits>;
  /** Bytes of file content read from Git at once, over all reads of this source (default 256 MiB). */
  readBudgetBytes?: number;
  /** Remote mode: pack files per cached clone before it starts over with one shallow fetch (default 50). */
  maxPacksPerProject?: number;
  /** HTTP timeout per request in remote mode (default 30 s). */
  requestTimeoutMs?: number;
  logger?: Logger;
  /** Called after every check of a (project, ref), for metrics (fetch durations, failures). */
  onCheck?: (e: { project: string; ref: GitRef; durationMs: number; ok: boolean; changed: boolean }) => void;
}

interface Listener {
  onCommit: (e: CommitEvent) => void;
  onError: (e: SourceErrorEvent) => void;
  onRecover?: (e: SourceRecoverEvent) => void;
}

interface Watch {
  project: string;
  ref: GitRef;
  listener: Listener;
  commit?: string;
  problem?: ProblemReport;
}

interface ProjectState {
  watches: Map<string, Watch>;
  timer?: PollTimer;
  running?: Promise<void>;
  queued?: Promise<void>;
}

const MEMO_ENTRIES = 256;
/** Bytes of file content kept by the readFiles memo (results of up to 20 MiB each). */
const MEMO_BYTES = 128 * 1024 * 1024;
export const DEFAULT_READ_BUDGET_BYTES = 256 * 1024 * 1024;
/** Trees kept parsed: a config project with 10,000 agent folders has about 10,004 trees. */
const TREE_ENTRIES = 20_000;
/** Tree entries kept parsed over all trees (about 150 bytes each): a tenant's huge trees cannot pile up. */
const TREE_ENTRY_TOTAL = 500_000;
/** Single-file reads kept per (project, commit, path): config.yaml of every agent at the last commits. */
const FILE_ENTRIES = 20_000;

export class GitWatcher implements GitSource {
  private readonly backend: GitBackend;
  private readonly projects = new Map<string, ProjectState>();
  /** readFiles results by (project, commit, globs), weighed by their bytes. */
  private readonly memo = new BoundedMap<Promise<ManifestFile[]>>(MEMO_ENTRIES, MEMO_BYTES);
  private readonly budget: ByteBudget;
  private readonly trees = new BoundedMap<Promise<readonly TreeEntry[]>>(TREE_ENTRIES, TREE_ENTRY_TOTAL);
  private readonly fileMemo = new BoundedMap<Promise<string | undefined>>(FILE_ENTRIES);
  private readonly limits: ReadLimits;
  private readonly pollMs: number;
  private readonly log: Logger;
  private readonly closeHttp?: () => void;
  private closed = false;

  constructor(private readonly options: GitSourceOptions) {
    this.pollMs = options.pollIntervalMs ?? 15_000;
    this.limits = { ...DEFAULT_READ_LIMITS, ...options.limits };
    this.budget = new ByteBudget(options.readBudgetBytes ?? DEFAULT_READ_BUDGET_BYTES);
    this.log = options.logger ?? silentLogger();
    if (options.root !== undefined && options.baseUrl === undefined) {
      this.backend = new LocalBackend(options.root);
    } else if (options.baseUrl !== undefined && options.root === undefined) {
      if (!options.cacheDir) throw new UserError('GIT_NO_CACHE_DIR', 'a Git base URL needs a cache folder for clones');
      const http = createGitHttpClient({ timeoutMs: options.requestTimeoutMs });
      this.closeHttp = () => http.close();
      this.backend = new RemoteBackend({
        baseUrl: options.baseUrl,
        token: options.token,
        cacheDir: options.cacheDir,
        http,
        maxPacks: options.maxPacksPerProject,
      });
    } else {
      throw new UserError(
        'GIT_SOURCE_CONFLICT',
        'give exactly one Git source: a base URL (--git-base-url) or a local root (--git-root)',
      );
    }
  }

  /** Create the cache folder; call once before use in remote mode (cheap otherwise). */
  async init(): Promise<void> {
    if (this.options.cacheDir) await mkdir(this.options.cacheDir, { recursive: true, mode: 0o700 });
  }

  watch(
    project: string,
    ref: GitRef,
    onCommit: (e: CommitEvent) => void,
    onError: (e: SourceErrorEvent) => void,
    onRecover?: (e: SourceRecoverEvent) => void,
  ): () => void {
    checkProjectId(project);
    if (this.closed) throw new UserError('GIT_SOURCE_CLOSED', 'the Git source is closed');
    let state = this.projects.get(project);
    const key = refKey(ref);
    if (state?.watches.has(key)) {
      throw new UserError(
        'GIT_ALREADY_WATCHED',
        `${project}: ${describeRef(ref)} is already watched; share that watch (fleet/watches.ts does)`,
      );
    }
    if (!state) {
      state = { watches: new Map() };
      this.projects.set(project, state);
      this.startTimer(project, state);
    }
    const watch: Watch = { project, ref: copyRef(ref), listener: { onCommit, onError, onRecover } };
    state.watches.set(key, watch);
    void this.schedule(project, state);
    return () => {
      const s = this.projects.get(project);
      if (!s || s.watches.get(key) !== watch) return;
      s.watches.delete(key);
      if (s.watches.size === 0) {
        s.timer?.stop();
        this.projects.delete(project);
      }
    };
  }

  refresh(project: string): Promise<void> {
    const id = project.replace(/\.git$/, '');
    const state = this.projects.get(id);
    if (!state || this.closed) return Promise.resolve();
    return this.schedule(id, state);
  }

  async readFiles(project: string, commit: string, globs: string[]): Promise<ManifestFile[]> {
    const key = `${project}\0${commit}\0${globs.join('\0')}`;
    const known = this.memo.get(key);
    if (known) return known;
    const p = (async () => {
      const store = await this.backend.storeFor(project, commit);
      return readMatchingFiles(
        { ...store, project, commit, budget: this.budget },
        globs,
        this.limits,
        this.treesOf(project, store),
      );
    })();
    this.memo.set(key, p);
    // Weighed by its bytes once read (MEMO_BYTES); a failure is not remembered.
    p.then(
      (files) =>
        this.memo.weigh(
          key,
          p,
          files.reduce((n, f) => n + f.path.length + f.content.length, 0),
        ),
      () => this.memo.deleteIf(key, p),
    );
    return p;
  }

  /** Memoised per (project, commit, path): a commit never changes, so neither does the answer. */
  readFile(
    project: string,
    commit: string,
    path: string,
    options: { maxBytes?: number } = {},
  ): Promise<string | undefined> {
    const limits =
      options.maxBytes === undefined
        ? this.limits
        : { ...this.limits, maxFileBytes: Math.min(this.limits.maxFileBytes, options.maxBytes) };
    return this.memoised(`read\0${project}\0${commit}\0${path}\0${limits.maxFileBytes}`, async () => {
      const store = await this.backend.storeFor(project, commit);
      return readOneFile(
        { ...store, project, commit, budget: this.budget },
        path,
        limits,
        this.treesOf(project, store),
      );
    });
  }

  fileId(project: string, commit: string, path: string): Promise<string | undefined> {
    return this.memoised(`id\0${project}\0${commit}\0${path}`, async () => {
      const store = await this.backend.storeFor(project, commit);
      return findFileId({ ...store, project, commit }, path, this.treesOf(project, store));
    });
  }

  private memoised(key: string, read: () => Promise<string | undefined>): Promise<string | undefined> {
    let p = this.fileMemo.get(key);
    if (!p) {
      p = read();
      this.fileMemo.set(key, p);
      // A failure (commit not fetched yet, file too large) is not remembered.
      const mine = p;
      p.catch(() => this.fileMemo.deleteIf(key, mine));
    }
    return p;
  }

  /** A tree reader over the shared tree memo (tree ids are content hashes, so entries never go stale). */
  private treesOf(project: string, store: Parameters<typeof treeReader>[0]): TreeReader {
    const read = treeReader(store);
    return (oid) => {
      const key = `${project}\0${oid}`;
      let p = this.trees.get(key);
      if (!p) {
        const mine = read(oid);
        p = mine;
        this.trees.set(key, mine);
        mine.then(
          (entries) => this.trees.weigh(key, mine, entries.length),
          () => this.trees.deleteIf(key, mine),
        );
      }
      return p;
    };
  }

  /** Number of projects and (project, ref) pairs followed: for metrics and tests. */
  stats(): { projects: number; watches: number } {
    let watches = 0;
    for (const s of this.projects.values()) watches += s.watches.size;
    return { projects: this.projects.size, watches };
  }

  async close(): Promise<void> {
    this.closed = true;
    const running: Promise<void>[] = [];
    for (const s of this.projects.values()) {
      s.timer?.stop();
      if (s.running) running.push(s.running);
    }
    this.projects.clear();
    await Promise.allSettled(running);
    this.closeHttp?.();
  }

  // ---- polling and coalesced checks ----

  private startTimer(project: string, state: ProjectState): void {
    // Fixed-rate (see poll-timer.ts): a check starts every pollMs whatever the last one took, and
    // a tick that lands on a running check is coalesced into one check right after it. The first
    // poll lands at a random point of the interval so many projects do not poll in step.
    state.timer = startPollTimer(
      () => {
        if (this.projects.get(project) === state) void this.schedule(project, state);
      },
      this.pollMs,
      Math.floor(this.pollMs * (0.5 + Math.random() * 0.5)),
    );
  }

  /** Run a check now, or once more right after the one in flight (all callers share it). */
  private schedule(project: string, state: ProjectState): Promise<void> {
    if (!state.running) {
      state.running = this.check(project, state).finally(() => {
        state.running = undefined;
      });
      return state.running;
    }
    if (!state.queued) {
      state.queued = state.running.then(() => {
        state.queued = undefined;
        return this.schedule(project, state);
      });
    }
    return state.queued;
  }

  private async check(project: string, state: ProjectState): Promise<void> {
    for (const w of [...state.watches.values()]) {
      if (this.closed || state.watches.get(refKey(w.ref)) !== w) continue;
      if ('commit' in w.ref && w.commit) continue; // a pinned commit never moves
      const started = performance.now();
      let ok = false;
      let changed = false;
      try {
        const commit = await this.backend.resolve(project, w.ref);
        ok = true;
        if (w.problem) {
          // Said once, like the problem: the listener clears what it shows even if the commit did not move.
          const cleared = w.problem;
          w.problem = undefined;
          this.log.info({ project, ref: describeRef(w.ref), commit, cleared: cleared.code }, GIT_RECOVERED);
          const { onRecover } = w.listener;
          if (onRecover) safeCall(() => onRecover({ project, ref: w.ref, commit, cleared }), this.log);
        }
        if (commit !== w.commit) {
          changed = true;
          w.commit = commit;
          this.log.info({ project, commit, ref: describeRef(w.ref) }, DETECTED_COMMIT);
          safeCall(() => w.listener.onCommit({ project, ref: w.ref, commit }), this.log);
        }
      } catch (err) {
        const problem = problemOf(err, ProblemCode.GIT_ERROR);
        // Once per kind of problem: a host that is down must not page anyone at every poll.
        if (!w.problem || w.problem.code !== problem.code) {
          w.problem = problem;
          this.log.warn(
            { project, ref: describeRef(w.ref), code: problem.code, error: problem.message, commit: w.commit },
            GIT_PROBLEM,
          );
          safeCall(() => w.listener.onError({ project, ref: w.ref, problem }), this.log);
        }
      } finally {
        this.options.onCheck?.({ project, ref: w.ref, durationMs: performance.now() - started, ok, changed });
      }
    }
  }
}

/** Create a Git source from server options (see GitSourceOptions), ready to watch. */
export async function createGitSource(options: GitSourceOptions): Promise<GitWatcher> {
  const source = new GitWatcher(options);
  await source.init();
  return source;
}

function copyRef(ref: GitRef): GitRef {
  if ('branch' in ref) return { branch: ref.branch };
  if ('tag' in ref) return { tag: ref.tag };
  if ('commit' in ref) return { commit: ref.commit };
  return {};
}

function safeCall(fn: () => void, log: Logger): void {
  try {
    fn();
  } catch (err) {
    log.error({ error: errorMessage(err) }, 'git source listener failed');
  }
}
