/**
 * The fleet: for every registered agent, its configuration (read from its config project) and the
 * desired state of each manifest project it names, kept current as Git moves.
 *
 * Scale rules (10,000 agents on one process):
 * - ONE GitSource watch per config project and ONE per manifest (project, ref), reference-counted
 *   by the agents that use it; no per-agent timers.
 * - Files are read once per (project, commit, globs) and a desired message is built and encoded
 *   once per (project, commit, globs, resolved config); agents with the same configuration share
 *   the same DesiredEntry object. Memos for a watch are dropped when its commit moves on.
 *
 * - A new config-project commit re-resolves only the agents whose config.yaml blob changed
 *   (GitSource.fileId); the others keep their parsed configuration untouched.
 *
 * An invalid config.yaml leaves the agent's last valid configuration in force; its problems go to
 * the agent as an `error` message and into the registry status (shown by `agent list`). A Git
 * problem that clears goes to the agent as an `error` message with no problems for that project,
 * and leaves the status.
 *
 * Tenants (see project-access.ts): before any watch or read of a manifest project, the project
 * must pass the access rule for the agent (its config project's group hierarchy plus the
 * registry's allowProjects). A refused project is left out of the configuration in force and
 * reported as a config problem (CONFIG_PROJECT_NOT_ALLOWED, file:line); the rest of the file
 * applies. A registry change of the agent's record re-evaluates the rule on the running server.
 *
 * Every task started without an await (`this.own(...)`) has an owner that catches: a bug in one
 * agent's path is logged ('fleet task failed') and counted, never an unhandled rejection.
 */
import { createHash } from 'node:crypto';
import { GitopsError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import {
  encodeMessage, type ConfigMessage, type DesiredMessage, type ErrorMessage, type ManifestFile, type ManifestProjectConfig, type ProblemReport,
} from '../protocol/messages.js';
import { CONFIG_LIMITS, agentConfigPath, configTooLarge, parseAgentConfig, type ParsedAgentConfig } from './config.js';
import { refKey } from './git/backends.js';
import type { DesiredEntry, DesiredStateProvider } from './hub.js';
import type { ServerMetrics } from './metrics.js';
import type { AgentConfig, CommitEvent, GitRef, GitSource, SourceErrorEvent, SourceRecoverEvent } from './ports.js';
import { allowCommand, projectAccess } from './project-access.js';
import { projectIdProblem, quoteId } from './project-id.js';
import { boundProblems, type AgentRecord, type Registry, type RegistryChange } from './registry.js';

/** Log message of a background task that failed (fields: task, agent, error); the task's agent is unaffected otherwise. */
export const FLEET_TASK_FAILED = 'fleet task failed';

/** Problem codes the fleet adds to those of config.ts. */
export const FleetProblem = {
  /** A manifest project outside what the agent may read (project-access.ts). */
  PROJECT_NOT_ALLOWED: 'CONFIG_PROJECT_NOT_ALLOWED',
  /** The registry record names a config project that is no project path. */
  CONFIG_PROJECT_INVALID: 'CONFIG_PROJECT_INVALID',
} as const;


/** Where fleet messages go (the hub). */
export interface Pusher {
  pushConfig(agentId: string, message: ConfigMessage): void;
  pushDesired(agentId: string, entry: DesiredEntry): void;
  pushError(agentId: string, message: ErrorMessage): void;
}

export interface FleetOptions {
  git: GitSource;
  registry: Pick<Registry, 'active' | 'get' | 'updateStatus' | 'onChange'> & Partial<Pick<Registry, 'peekStatus'>>;
  logger: Logger;
  metrics: ServerMetrics;
  /** Parser for config.yaml (default: parseAgentConfig). */
  loadConfig?: (text: string, options: { file: string; configProject: string; commit: string }) => ParsedAgentConfig;
}

/** A valid config.yaml as parsed (before the access rule), with the line of each manifest project. */
interface ParsedConfig {
  config: AgentConfig;
  projectLines?: readonly (number | undefined)[];
}

interface Watch {
  readonly key: string;
  readonly project: string;
  readonly ref: GitRef;
  readonly agents: Set<string>;
  unwatch?: () => void;
  commit?: string;
  problem?: ProblemReport;
  /** (globs, config) → desired entry, for `commit` only. */
  desired: Map<string, Promise<DesiredEntry>>;
  /** globs → files, for `commit` only. */
  files: Map<string, Promise<ManifestFile[]>>;
  /** Set when the Git source refused to watch at all (a project id it cannot use). */
  failed?: ProblemReport;
}

interface AgentState {
  record: AgentRecord;
  /** Last valid config.yaml as parsed, before the access rule. */
  parsed?: ParsedConfig;
  /** The configuration in force: `parsed` without the projects the agent may not read. */
  config?: AgentConfig;
  configCommit?: string;
  configProblems: ProblemReport[];
  /** Keys of the manifest watches this agent is subscribed to. */
  subscriptions: Set<string>;
  /** Bumped on every config read so a slow old read cannot overwrite a newer one. */
  generation: number;
  /** Blob id of the config.yaml last resolved ('' when absent), to skip unchanged files. */
  configBlob?: string;
  /** Projects whose manifests could not be read for this agent (cleared by the next good read). */
  readProblems: Set<string>;
}

const DEFAULT_SETTINGS: ConfigMessage['settings'] = { drift: { mode: 'correct', ignore: [] } };

/**
 * Config reads in flight at once. A server starting with 10,000 agents would otherwise hold
 * 10,000 half-done reads and parses at the same moment: hundreds of MiB of short-lived garbage,
 * and a heap (and RSS) that stays that large long after.
 */
const CONFIG_READS_IN_FLIGHT = 32;
/** Parsed valid configs kept per (config project, blob id): agents with the same file share one. */
const PARSED_CONFIGS = 1024;

/** Key of the shared watch of one (project, ref); a config project is always watched at its default branch. */
function watchKey(project: string, ref: GitRef = {}): string {
  return `${project}\0${refKey(ref)}`;
}

/** sha256 over the files sorted by path and the resolved config: equal digests mean equal desired state. */
export function desiredDigest(files: readonly ManifestFile[], config: ManifestProjectConfig): string {
  const hash = createHash('sha256');
  for (const file of [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    hash.update(`${Buffer.byteLength(file.path)}:${file.path}\n${Buffer.byteLength(file.content)}:`).update(file.content).update('\n');
  }
  hash.update(JSON.stringify(config));
  return `sha256:${hash.digest('hex')}`;
}

export class Fleet implements DesiredStateProvider {
  private readonly agents = new Map<string, AgentState>();
  private readonly configWatches = new Map<string, Watch>();
  private readonly manifestWatches = new Map<string, Watch>();
  private pusher?: Pusher;
  private unsubscribe?: () => void;
  private readonly log: Logger;
  private readonly loadConfig: NonNullable<FleetOptions['loadConfig']>;
  /** Valid configs by `configProject \0 blob id`: a blob's content never changes, so neither does its config. */
  private readonly parsed = new Map<string, ParsedConfig>();
  private readonly configReads = new Limiter(CONFIG_READS_IN_FLIGHT);

  constructor(private readonly options: FleetOptions) {
    this.log = options.logger;
    this.loadConfig = options.loadConfig ?? parseAgentConfig;
  }

  /** Starts watching for every active agent, and follows registry changes. */
  start(pusher: Pusher): void {
    this.pusher = pusher;
    for (const record of this.options.registry.active()) this.guard('add agent', record, () => this.addAgent(record));
    this.unsubscribe = this.options.registry.onChange((change: RegistryChange) => {
      for (const record of change.revoked) this.guard('remove agent', record, () => this.removeAgent(record.id));
      for (const record of change.added) this.guard('add agent', record, () => this.addAgent(record));
      // An operator changed what the agent may read (allowProjects) or its config project.
      for (const record of change.changed ?? []) this.guard('update agent', record, () => this.updateAgent(record));
    });
  }

  close(): void {
    this.unsubscribe?.();
    for (const w of [...this.configWatches.values(), ...this.manifestWatches.values()]) w.unwatch?.();
    this.configWatches.clear();
    this.manifestWatches.clear();
    this.agents.clear();
  }

  /** Number of Git watches (for tests and metrics): config projects plus manifest project/refs. */
  get watchCount(): number {
    return this.configWatches.size + this.manifestWatches.size;
  }

  // ---- DesiredStateProvider ----

  configMessage(agentId: string): ConfigMessage | undefined {
    const state = this.agents.get(agentId);
    if (!state?.config) return undefined;
    return configMessage(state.config, state.configProblems);
  }

  errorMessages(agentId: string): ErrorMessage[] {
    const state = this.agents.get(agentId);
    if (!state) return [];
    const out: ErrorMessage[] = [];
    if (state.configProblems.length) out.push({ type: 'error', problems: state.configProblems });
    // An unreachable config project too: after a server restart with Git down it is the only
    // problem there is (no config read, so no manifest watches yet).
    const cw = this.configWatches.get(watchKey(state.record.configProject));
    if (cw?.problem) out.push({ type: 'error', project: cw.project, problems: [cw.problem] });
    for (const key of state.subscriptions) {
      const w = this.manifestWatches.get(key);
      if (w?.problem) out.push({ type: 'error', project: w.project, problems: [w.problem] });
    }
    return out;
  }

  async desired(agentId: string): Promise<DesiredEntry[]> {
    const state = this.agents.get(agentId);
    if (!state?.config) return [];
    const entries = await Promise.all(state.config.projects.map((cfg) => this.desiredFor(state, cfg)));
    return entries.filter((e): e is DesiredEntry => e !== undefined);
  }

  /** Manifest project ids of the config in force (the hub refuses reports for any other). */
  projectsOf(agentId: string): readonly string[] {
    return this.agents.get(agentId)?.config?.projects.map((p) => p.id) ?? [];
  }

  // ---- agents and their config ----

  private addAgent(record: AgentRecord): void {
    const known = this.agents.get(record.id);
    if (known) {
      if (known.record !== record) this.updateAgent(record);
      return;
    }
    const state: AgentState = { record, configProblems: [], subscriptions: new Set(), generation: 0, readProblems: new Set() };
    this.agents.set(record.id, state);
    // A record written before ids were checked (or by hand) must not reach the Git layer, and
    // must not stop the other agents: the problem is this agent's alone.
    const invalid = projectIdProblem(record.configProject);
    if (invalid !== undefined) {
      this.setConfigProblems(state, [{
        code: FleetProblem.CONFIG_PROJECT_INVALID,
        message: `agent ${record.name}: config project ${quoteId(record.configProject)} is not a GitLab project path (${invalid}); revoke the agent and create it again with --config-project group/name`,
      }]);
      return;
    }
    const w = this.subscribe(this.configWatches, record.configProject, {}, record.id, (e) => this.onConfigCommit(e), (e) => this.onConfigError(e), (e) => this.onConfigRecover(e));
    if (w.commit) this.own(this.readConfig(state, w.commit), 'read config', state);
  }

  /**
   * The registry replaced an agent's record (an operator changed what it may read): the access
   * rule is applied again to the config in force, without reading Git.
   */
  private updateAgent(record: AgentRecord): void {
    const state = this.agents.get(record.id);
    if (!state) return this.addAgent(record);
    if (record.revokedAt) return this.removeAgent(record.id);
    if (state.record.configProject !== record.configProject) {
      this.removeAgent(record.id);
      return this.addAgent(record);
    }
    const before = (state.record.allowProjects ?? []).join('\0');
    state.record = record;
    if ((record.allowProjects ?? []).join('\0') === before) return;
    this.log.info({ agent: record.name, allowProjects: (record.allowProjects ?? []).slice(0, 20) }, 'agent access changed');
    if (state.parsed) this.applyConfig(state, state.parsed, state.configCommit ?? '');
  }

  private removeAgent(agentId: string): void {
    const state = this.agents.get(agentId);
    if (!state) return;
    this.agents.delete(agentId);
    this.unsubscribe_(this.configWatches, watchKey(state.record.configProject), agentId);
    for (const key of state.subscriptions) this.unsubscribe_(this.manifestWatches, key, agentId);
  }

  private onConfigCommit(event: CommitEvent): void {
    const w = this.configWatches.get(watchKey(event.project));
    if (!w) return;
    this.log.info({ commit: event.commit, project: event.project, agents: w.agents.size }, 'reading agent configs');
    w.problem = undefined;
    for (const agentId of w.agents) {
      const state = this.agents.get(agentId);
      if (state) this.own(this.readConfig(state, event.commit), 'read config', state);
    }
  }

  private onConfigError(event: SourceErrorEvent): void {
    this.log.warn({ project: event.project, code: event.problem.code, problem: event.problem.message }, 'config project unreadable; keeping the last configuration');
    const w = this.configWatches.get(watchKey(event.project));
    if (w) w.problem = event.problem;
    for (const agentId of w?.agents ?? []) this.tellSourceProblem(agentId, event.project, event.problem);
  }

  /** A Git problem with one project, for one agent: into its status and to its sessions. */
  private tellSourceProblem(agentId: string, project: string, problem: ProblemReport): void {
    this.options.registry.updateStatus(agentId, (s) => { s.sourceProblems = { ...(s.sourceProblems ?? {}), [project]: boundProblems([problem])[0] }; });
    this.pusher?.pushError(agentId, { type: 'error', project, problems: [problem] });
  }

  private onConfigRecover(event: SourceRecoverEvent): void {
    this.log.info({ project: event.project, commit: event.commit }, 'config project readable again');
    const w = this.configWatches.get(watchKey(event.project));
    if (w) w.problem = undefined;
    for (const agentId of w?.agents ?? []) this.clearSourceProblem(agentId, event.project);
  }

  /** Removes a Git problem from an agent's status and tells its sessions it cleared. */
  private clearSourceProblem(agentId: string, project: string): void {
    let had = false;
    this.options.registry.updateStatus(agentId, (s) => {
      if (!s.sourceProblems?.[project]) return;
      had = true;
      const { [project]: _gone, ...rest } = s.sourceProblems;
      if (Object.keys(rest).length) s.sourceProblems = rest;
      else delete s.sourceProblems;
    });
    // Also when the status had none (the server restarted meanwhile): the agent may still show it.
    this.pusher?.pushError(agentId, { type: 'error', project, problems: [] });
    if (had) this.log.debug({ agent: agentId, project }, 'source problem cleared');
  }

  private async readConfig(state: AgentState, commit: string): Promise<void> {
    const generation = ++state.generation;
    const { record } = state;
    const file = agentConfigPath(record.name);
    let result: ParsedAgentConfig;
    let blob: string | undefined;
    const release = await this.configReads.acquire();
    try {
      // A newer read was started while this one waited for its turn: leave it to that one.
      if (generation !== state.generation || this.agents.get(record.id) !== state) return;
      // Skip files the commit did not touch: 10,000 agents in one config project must not mean
      // 10,000 parses for a change to one of them.
      if (this.options.git.fileId) {
        blob = (await this.options.git.fileId(record.configProject, commit, file)) ?? '';
        if (blob === state.configBlob && generation === state.generation) {
          state.configCommit = commit;
          return;
        }
      }
      const known = blob ? this.parsed.get(`${record.configProject}\0${blob}`) : undefined;
      if (known) {
        result = { ok: true, config: known.config, commit, projectLines: known.projectLines };
      } else {
        // Refused from the blob's header when over GitLab's limit, so an oversized file is never inflated.
        const text = await this.options.git.readFile(record.configProject, commit, file, { maxBytes: CONFIG_LIMITS.fileBytes });
        result = this.loadConfig(text ?? '', { file, configProject: record.configProject, commit });
        // Only valid configs are shared: problems name the agent's own file. The access rule is
        // per agent, so it is applied after this cache, never inside it.
        if (result.ok && blob) remember(this.parsed, `${record.configProject}\0${blob}`, { config: result.config, projectLines: result.projectLines }, PARSED_CONFIGS);
      }
    } catch (err) {
      blob = undefined;
      // Refused by the Git layer's size check (before it inflated the file): the same problem as
      // a file config.ts refuses by size, with the size the object header gave.
      const bytes = err instanceof GitopsError && err.code === 'GIT_FILE_TOO_LARGE' ? err.data.bytes : undefined;
      result = typeof bytes === 'number'
        ? { ok: false, commit, problems: [configTooLarge(file, bytes)] }
        : { ok: false, commit, problems: [{ code: 'CONFIG_UNREADABLE', message: `${file}: cannot be read from ${record.configProject} at ${commit.slice(0, 12)}: ${errorMessage(err)}`, file }] };
    } finally {
      release();
    }
    if (generation !== state.generation || this.agents.get(record.id) !== state) return;
    state.configBlob = blob;

    if (!result.ok) {
      this.log.warn({ agent: record.name, commit, problems: boundProblems(result.problems).map((p) => p.message) }, 'invalid agent config; keeping the last valid one');
      this.setConfigProblems(state, result.problems);
      return;
    }
    if (result.config.unusedSections.length) this.log.info({ agent: record.name, sections: result.config.unusedSections }, 'config sections not used by this product');
    state.parsed = { config: result.config, projectLines: result.projectLines };
    this.applyConfig(state, state.parsed, commit);
  }

  /**
   * Puts a valid parsed config in force for one agent, without the manifest projects it may not
   * read (each refusal is a config problem naming file:line, the project and the rule), and
   * aligns watches, status and sessions with it.
   */
  private applyConfig(state: AgentState, parsed: ParsedConfig, commit: string): void {
    const { record } = state;
    const { config, refused } = enforceAccess(record, parsed);
    state.configCommit = commit;
    const previous = state.config;
    state.config = config;
    if (refused.length) {
      this.log.warn({ agent: record.name, commit, configProject: record.configProject, projects: refused.slice(0, 20).map((r) => r.project) }, 'manifest projects not allowed for this agent');
      this.setConfigProblems(state, refused.map((r) => r.problem));
    } else {
      const had = state.configProblems.length > 0;
      state.configProblems = [];
      // Only when there is something to clear: a status object (and a shard write) for each of
      // 10,000 agents that never had a problem would be memory and disk for nothing.
      const status = this.options.registry.peekStatus ? this.options.registry.peekStatus(record.id) : { configProblems: [] };
      if (status?.configProblems) this.options.registry.updateStatus(record.id, (s) => { delete s.configProblems; });
      // Sessions that were told of a problem hear that it cleared, even if the config is unchanged.
      if (had && (previous === config || (previous && JSON.stringify(previous) === JSON.stringify(config)))) this.pusher?.pushConfig(record.id, configMessage(config, []));
    }
    if (previous === config || (previous && JSON.stringify(previous) === JSON.stringify(config))) return;
    this.log.info({ agent: record.name, commit, projects: config.projects.map((p) => p.id) }, 'agent config loaded');
    this.resubscribe(state);
    this.pusher?.pushConfig(record.id, configMessage(config, state.configProblems));
    for (const cfg of config.projects) this.own(this.pushProject(state, cfg), 'push project', state);
  }

  /** Config problems of one agent: kept (bounded), into its status, and to its sessions. */
  private setConfigProblems(state: AgentState, problems: readonly ProblemReport[]): void {
    state.configProblems = boundProblems(problems);
    this.options.registry.updateStatus(state.record.id, (s) => { s.configProblems = state.configProblems; });
    this.pusher?.pushError(state.record.id, { type: 'error', problems: state.configProblems });
  }

  /** Runs `fn` for one agent; a throw is that agent's problem, logged, never the caller's. */
  private guard(task: string, record: AgentRecord, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.taskFailed(task, record, err);
    }
  }

  /** Owns a task started without an await: its failure is logged and counted, never unhandled. */
  private own(task: Promise<unknown>, what: string, state: AgentState): void {
    task.catch((err: unknown) => this.taskFailed(what, state.record, err));
  }

  private taskFailed(task: string, record: AgentRecord, err: unknown): void {
    this.options.metrics.backgroundFailures.inc({ task });
    this.log.error({ task, agent: record.name, error: errorMessage(err).slice(0, 500) }, FLEET_TASK_FAILED);
  }

  /** Aligns the agent's manifest watches with its config. */
  private resubscribe(state: AgentState): void {
    const wanted = new Map<string, ManifestProjectConfig>();
    for (const cfg of state.config?.projects ?? []) wanted.set(watchKey(cfg.id, cfg.ref as GitRef), cfg);
    for (const key of state.subscriptions) {
      if (!wanted.has(key)) {
        state.subscriptions.delete(key);
        this.unsubscribe_(this.manifestWatches, key, state.record.id);
      }
    }
    for (const [key, cfg] of wanted) {
      if (state.subscriptions.has(key)) continue;
      state.subscriptions.add(key);
      this.subscribe(this.manifestWatches, cfg.id, cfg.ref as GitRef, state.record.id, (e) => this.onManifestCommit(key, e), (e) => this.onManifestError(key, e), (e) => this.onManifestRecover(key, e));
    }
  }

  // ---- manifest projects ----

  private onManifestCommit(key: string, event: CommitEvent): void {
    const w = this.manifestWatches.get(key);
    if (!w || w.commit === event.commit) return;
    w.commit = event.commit;
    w.desired.clear();
    w.files.clear();
    this.options.metrics.commitsDetected.inc({ project: w.project });
    // The Git source logs 'detected commit'; this line says who it goes to.
    this.log.info({ commit: event.commit, project: w.project, agents: w.agents.size }, 'pushing commit');
    if (w.problem) {
      w.problem = undefined;
      for (const agentId of w.agents) this.clearSourceProblem(agentId, w.project);
    }
    for (const agentId of w.agents) {
      const state = this.agents.get(agentId);
      const cfg = state?.config?.projects.find((p) => watchKey(p.id, p.ref as GitRef) === key);
      if (state && cfg) this.own(this.pushProject(state, cfg), 'push project', state);
    }
  }

  private onManifestRecover(key: string, event: SourceRecoverEvent): void {
    const w = this.manifestWatches.get(key);
    if (!w?.problem) return;
    w.problem = undefined;
    this.log.info({ project: w.project, commit: event.commit, agents: w.agents.size }, 'manifest project readable again');
    for (const agentId of w.agents) this.clearSourceProblem(agentId, w.project);
  }

  private onManifestError(key: string, event: SourceErrorEvent): void {
    const w = this.manifestWatches.get(key);
    if (!w) return;
    const first = w.problem?.message !== event.problem.message;
    w.problem = event.problem;
    if (!first) return;
    this.log.warn({ project: w.project, code: event.problem.code, problem: event.problem.message }, 'manifest project unreadable; agents keep the last commit');
    for (const agentId of w.agents) this.tellSourceProblem(agentId, w.project, event.problem);
  }

  private async pushProject(state: AgentState, cfg: ManifestProjectConfig): Promise<void> {
    const entry = await this.desiredFor(state, cfg);
    if (!entry || this.agents.get(state.record.id) !== state) return;
    if (state.readProblems.delete(cfg.id)) this.clearSourceProblem(state.record.id, cfg.id);
    this.pusher?.pushDesired(state.record.id, entry);
  }

  /** The desired entry for one agent's project at the watch's current commit (memoized). */
  private async desiredFor(state: AgentState, cfg: ManifestProjectConfig): Promise<DesiredEntry | undefined> {
    const w = this.manifestWatches.get(watchKey(cfg.id, cfg.ref as GitRef));
    const commit = w?.commit;
    if (!w || !commit) return undefined;
    const globs = cfg.paths.map((p) => p.glob);
    const globsKey = JSON.stringify(globs);
    const key = `${globsKey}\0${JSON.stringify(cfg)}`;
    let entry = w.desired.get(key);
    if (!entry) {
      let files = w.files.get(globsKey);
      if (!files) {
        files = this.readFiles(w.project, commit, globs);
        w.files.set(globsKey, files);
      }
      entry = files.then((f) => {
        const message: DesiredMessage = { type: 'desired', project: cfg.id, commit, digest: desiredDigest(f, cfg), config: cfg, files: f };
        return { project: cfg.id, commit, digest: message.digest, encoded: encodeMessage(message) };
      });
      w.desired.set(key, entry);
      // A failed read is not cached: the next commit or hello tries again.
      entry.catch(() => { if (w.desired.get(key) === entry) w.desired.delete(key); if (w.files.get(globsKey) === files) w.files.delete(globsKey); });
    }
    try {
      return await entry;
    } catch (err) {
      const problem: ProblemReport = { code: (err as { code?: string }).code ?? 'GIT_READ_FAILED', message: `${cfg.id}@${commit.slice(0, 12)}: ${errorMessage(err)}` };
      this.log.warn({ project: cfg.id, commit, agent: state.record.name, problem: problem.message }, 'cannot read manifests');
      state.readProblems.add(cfg.id);
      this.options.registry.updateStatus(state.record.id, (s) => { s.sourceProblems = { ...(s.sourceProblems ?? {}), [cfg.id]: boundProblems([problem])[0] }; });
      this.pusher?.pushError(state.record.id, { type: 'error', project: cfg.id, problems: [problem] });
      return undefined;
    }
  }

  private async readFiles(project: string, commit: string, globs: string[]): Promise<ManifestFile[]> {
    const stop = this.options.metrics.fetchDuration.startTimer();
    try {
      const files = await this.options.git.readFiles(project, commit, globs);
      stop({ result: 'ok' });
      return files;
    } catch (err) {
      stop({ result: 'error' });
      throw err;
    }
  }

  // ---- shared, reference-counted watches ----

  private subscribe(map: Map<string, Watch>, project: string, ref: GitRef, agentId: string, onCommit: (e: CommitEvent) => void, onError: (e: SourceErrorEvent) => void, onRecover: (e: SourceRecoverEvent) => void): Watch {
    const key = watchKey(project, ref);
    let w = map.get(key);
    if (!w) {
      w = { key, project, ref, agents: new Set(), desired: new Map(), files: new Map() };
      map.set(key, w);
      w.agents.add(agentId);
      const watch = w;
      try {
        watch.unwatch = this.options.git.watch(project, ref, (e) => {
          if (map.get(key) !== watch) return;
          if (map === this.configWatches) {
            if (watch.commit === e.commit) return;
            watch.commit = e.commit;
          }
          onCommit(e);
        }, (e) => { if (map.get(key) === watch) onError(e); }, (e) => { if (map.get(key) === watch) onRecover(e); });
      } catch (err) {
        // The Git source refuses the project outright (config.ts and addAgent check ids first, so
        // this is a last line): the problem goes to the agents that asked, nothing is watched.
        watch.failed = { code: (err as { code?: string }).code ?? 'GIT_WATCH_FAILED', message: `${project}: cannot be watched: ${errorMessage(err)}` };
        watch.problem = watch.failed;
        this.log.warn({ project, code: watch.failed.code, problem: watch.failed.message }, 'project cannot be watched');
      }
      this.tellIfFailed(watch, agentId);
      return watch;
    }
    w.agents.add(agentId);
    this.tellIfFailed(w, agentId);
    return w;
  }

  /** A watch the Git source refused: each agent that subscribes hears of it once, after the caller is done. */
  private tellIfFailed(w: Watch, agentId: string): void {
    const problem = w.failed;
    if (!problem) return;
    queueMicrotask(() => { if (w.agents.has(agentId) && this.agents.has(agentId)) this.tellSourceProblem(agentId, w.project, problem); });
  }

  private unsubscribe_(map: Map<string, Watch>, key: string, agentId: string): void {
    const w = map.get(key);
    if (!w) return;
    w.agents.delete(agentId);
    if (w.agents.size === 0) {
      map.delete(key);
      w.unwatch?.();
    }
  }
}

/** Map insert that forgets the oldest entry past `max`. */
function remember<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value as string);
}

/** At most `max` holders at a time; the others wait in arrival order. */
class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}
  async acquire(): Promise<() => void> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter, so `active` only drops when nobody waits.
      if (next) next();
      else this.active--;
    };
  }
}

/**
 * The config an agent may have: `parsed` without the manifest projects the access rule refuses
 * for this agent, and one problem per refusal (file:line, project, rule, and the operator's fix).
 * When nothing is refused the parsed config object itself is returned, so agents sharing a file
 * keep sharing one config object.
 */
export function enforceAccess(record: Pick<AgentRecord, 'name' | 'configProject' | 'allowProjects'>, parsed: ParsedConfig): { config: AgentConfig; refused: { project: string; problem: ProblemReport }[] } {
  const refused: { project: string; problem: ProblemReport }[] = [];
  const allowed: ManifestProjectConfig[] = [];
  const file = agentConfigPath(record.name);
  parsed.config.projects.forEach((cfg, i) => {
    const decision = projectAccess(record, cfg.id);
    if (decision.allowed) {
      allowed.push(cfg);
      return;
    }
    const line = parsed.projectLines?.[i];
    refused.push({
      project: cfg.id,
      problem: {
        code: FleetProblem.PROJECT_NOT_ALLOWED,
        message: `${file}${line ? `:${line}` : ''}: gitops.manifest_projects[${i}].id: ${decision.reason}; it is not read. An operator can allow it with \`${allowCommand(record.name, cfg.id)}\``,
        file,
        ...(line ? { line } : {}),
      },
    });
  });
  if (refused.length === 0) return { config: parsed.config, refused };
  return { config: { ...parsed.config, projects: allowed }, refused };
}

function configMessage(config: AgentConfig, errors: ProblemReport[]): ConfigMessage {
  return { type: 'config', settings: config.settings ?? DEFAULT_SETTINGS, projects: config.projects.map((p) => p.id), errors };
}
