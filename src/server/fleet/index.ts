/**
 * The fleet: for every registered agent, its configuration (read from its config project) and the
 * desired state of each manifest project it names, kept current as Git moves. This class follows
 * the registry and wires the parts; each part owns its rules:
 * - watches.ts: ONE Git watch per (project, ref), reference-counted by the agents that follow it
 *   (as their config project or as a manifest project); no per-agent timers;
 * - config.ts: reading and sharing config.yaml (once per blob, a bounded number at a time) and the
 *   access rule;
 * - desired.ts: files read once per (project, commit, globs), a desired message built and encoded
 *   once per (project, commit, globs, resolved config) and shared by the agents that have it;
 * - registry.ts: the status records (config and Git problems) this class reports into.
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
import { errorMessage, GitopsError, problemOf } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { ConfigMessage, ErrorMessage, ManifestProjectConfig, ProblemReport } from '../../protocol/messages.js';
import { ProblemCode } from '../../protocol/problems.js';
import type { ServerMetrics } from '../metrics.js';
import type { AgentConfig, DesiredEntry, DesiredStateProvider, GitRef, GitSource, Pusher } from '../ports.js';
import { projectIdProblem, quoteId } from '../project-id.js';
import { boundProblems, type AgentRecord, type Registry, type RegistryChange } from '../registry.js';
import { agentConfigPath, globsOverlapProblem } from '../config.js';
import { ConfigReader, configMessage, enforceAccess, sameConfig, type ParsedConfig } from './config.js';
import { desiredAt, timedReader, type FileReader } from './desired.js';
import { Watches, watchKey, type RoleHandlers, type Watch } from './watches.js';

/** Log message of a background task that failed (fields: task, agent, error); nothing else of that agent stops. */
export const FLEET_TASK_FAILED = 'fleet task failed';

/** The registry's reads and status writes the Fleet uses (registry.ts owns the records and their bounds). */
export type FleetRegistry = Pick<
  Registry,
  | 'active'
  | 'get'
  | 'onChange'
  | 'setConfigProblems'
  | 'clearConfigProblems'
  | 'setSourceProblem'
  | 'clearSourceProblem'
>;

export interface FleetOptions {
  git: GitSource;
  registry: FleetRegistry;
  logger: Logger;
  metrics: ServerMetrics;
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

export class Fleet implements DesiredStateProvider {
  private readonly agents = new Map<string, AgentState>();
  private readonly watches: Watches;
  private readonly configs: ConfigReader;
  private readonly readFiles: FileReader;
  private pusher?: Pusher;
  private unsubscribe?: () => void;
  private readonly log: Logger;

  constructor(private readonly options: FleetOptions) {
    this.log = options.logger;
    this.configs = new ConfigReader(options.git);
    this.readFiles = timedReader(options.git, options.metrics);
    this.watches = new Watches(options.git, this.log, { config: this.configRole, manifest: this.manifestRole });
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
    this.watches.close();
    this.agents.clear();
  }

  /** Number of Git watches (for tests and metrics): one per (project, ref) followed. */
  get watchCount(): number {
    return this.watches.size;
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
    const cw = this.watches.get(watchKey(state.record.configProject));
    if (cw?.problem && cw.agents.config.has(agentId))
      out.push({ type: 'error', project: cw.project, problems: [cw.problem] });
    for (const key of state.subscriptions) {
      const w = this.watches.get(key);
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

  // ---- agents ----

  private addAgent(record: AgentRecord): void {
    const known = this.agents.get(record.id);
    if (known) {
      if (known.record !== record) this.updateAgent(record);
      return;
    }
    const state: AgentState = {
      record,
      configProblems: [],
      subscriptions: new Set(),
      generation: 0,
      readProblems: new Set(),
    };
    this.agents.set(record.id, state);
    // A record written before ids were checked (or by hand) must not reach the Git layer, and
    // must not stop the other agents: the problem is this agent's alone.
    const invalid = projectIdProblem(record.configProject);
    if (invalid !== undefined) {
      this.setConfigProblems(state, [
        {
          code: ProblemCode.CONFIG_PROJECT_INVALID,
          message: `agent ${record.name}: config project ${quoteId(record.configProject)} is not a GitLab project path (${invalid}); revoke the agent and create it again with --config-project group/name`,
        },
      ]);
      return;
    }
    const w = this.watches.subscribe('config', record.configProject, {}, record.id);
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
    this.log.info(
      { agent: record.name, allowProjects: (record.allowProjects ?? []).slice(0, 20) },
      'agent access changed',
    );
    if (state.parsed) this.applyConfig(state, state.parsed, state.configCommit ?? '');
  }

  private removeAgent(agentId: string): void {
    const state = this.agents.get(agentId);
    if (!state) return;
    this.agents.delete(agentId);
    this.watches.unsubscribe('config', watchKey(state.record.configProject), agentId);
    for (const key of state.subscriptions) this.watches.unsubscribe('manifest', key, agentId);
  }

  // ---- config projects ----

  private readonly configRole: RoleHandlers = {
    commit: (w, event) => {
      this.log.info(
        { commit: event.commit, project: event.project, agents: w.agents.config.size },
        'reading agent configs',
      );
      for (const agentId of w.agents.config) {
        const state = this.agents.get(agentId);
        if (state) this.own(this.readConfig(state, event.commit), 'read config', state);
      }
    },
    error: (w, event) => {
      this.log.warn(
        { project: event.project, code: event.problem.code, problem: event.problem.message },
        'config project unreadable; keeping the last configuration',
      );
      for (const agentId of w.agents.config) this.tellSourceProblem(agentId, event.project, event.problem);
    },
    recover: (w, event) => {
      this.log.info({ project: event.project, commit: event.commit }, 'config project readable again');
      for (const agentId of w.agents.config) this.clearSourceProblem(agentId, event.project);
    },
    joined: (w, agentId, problem) => this.tellIfKnown(agentId, w.project, problem),
  };

  private async readConfig(state: AgentState, commit: string): Promise<void> {
    const generation = ++state.generation;
    const { record } = state;
    // A newer read was started, or the agent went, while this one waited: leave it to that one.
    const stale = (): boolean => generation !== state.generation || this.agents.get(record.id) !== state;
    const read = await this.configs.read(record, commit, state.configBlob, stale);
    if (!read || stale()) return;
    if (read.unchanged) {
      state.configCommit = commit;
      return;
    }
    const { result } = read;
    state.configBlob = read.blob;
    if (!result.ok) {
      this.log.warn(
        { agent: record.name, commit, problems: boundProblems(result.problems).map((p) => p.message) },
        'invalid agent config; keeping the last valid one',
      );
      this.setConfigProblems(state, result.problems);
      return;
    }
    if (result.config.unusedSections.length)
      this.log.info(
        { agent: record.name, sections: result.config.unusedSections },
        'config sections not used by this product',
      );
    state.parsed = { config: result.config, projectLines: result.projectLines, globPositions: result.globPositions };
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
      this.log.warn(
        {
          agent: record.name,
          commit,
          configProject: record.configProject,
          projects: refused.slice(0, 20).map((r) => r.project),
        },
        'manifest projects not allowed for this agent',
      );
      this.setConfigProblems(
        state,
        refused.map((r) => r.problem),
      );
    } else {
      const had = state.configProblems.length > 0;
      state.configProblems = [];
      this.options.registry.clearConfigProblems(record.id);
      // Sessions that were told of a problem hear that it cleared, even if the config is unchanged.
      if (had && sameConfig(previous, config)) this.pusher?.pushConfig(record.id, configMessage(config, []));
    }
    if (sameConfig(previous, config)) return;
    this.log.info({ agent: record.name, commit, projects: config.projects.map((p) => p.id) }, 'agent config loaded');
    this.resubscribe(state);
    this.pusher?.pushConfig(record.id, configMessage(config, state.configProblems));
    for (const cfg of config.projects) this.own(this.pushProject(state, cfg), 'push project', state);
  }

  /** Aligns the agent's manifest watches with its config. */
  private resubscribe(state: AgentState): void {
    const wanted = new Map<string, ManifestProjectConfig>();
    for (const cfg of state.config?.projects ?? []) wanted.set(watchKey(cfg.id, cfg.ref as GitRef), cfg);
    for (const key of state.subscriptions) {
      if (!wanted.has(key)) {
        state.subscriptions.delete(key);
        this.watches.unsubscribe('manifest', key, state.record.id);
      }
    }
    for (const [key, cfg] of wanted) {
      if (state.subscriptions.has(key)) continue;
      state.subscriptions.add(key);
      this.watches.subscribe('manifest', cfg.id, cfg.ref as GitRef, state.record.id);
    }
  }

  // ---- manifest projects ----

  private readonly manifestRole: RoleHandlers = {
    commit: (w, event, hadProblem) => {
      this.options.metrics.commitsDetected.inc({ project: w.project });
      // The Git source logs 'detected commit'; this line says who it goes to.
      this.log.info({ commit: event.commit, project: w.project, agents: w.agents.manifest.size }, 'pushing commit');
      if (hadProblem) for (const agentId of w.agents.manifest) this.clearSourceProblem(agentId, w.project);
      for (const agentId of w.agents.manifest) {
        const state = this.agents.get(agentId);
        const cfg = state?.config?.projects.find((p) => watchKey(p.id, p.ref as GitRef) === w.key);
        if (state && cfg) this.own(this.pushProject(state, cfg), 'push project', state);
      }
    },
    error: (w, event, repeated) => {
      if (repeated) return;
      this.log.warn(
        { project: w.project, code: event.problem.code, problem: event.problem.message },
        'manifest project unreadable; agents keep the last commit',
      );
      for (const agentId of w.agents.manifest) this.tellSourceProblem(agentId, w.project, event.problem);
    },
    recover: (w, event, hadProblem) => {
      if (!hadProblem) return;
      this.log.info(
        { project: w.project, commit: event.commit, agents: w.agents.manifest.size },
        'manifest project readable again',
      );
      for (const agentId of w.agents.manifest) this.clearSourceProblem(agentId, w.project);
    },
    joined: (w, agentId, problem) => this.tellIfKnown(agentId, w.project, problem),
  };

  private async pushProject(state: AgentState, cfg: ManifestProjectConfig): Promise<void> {
    const entry = await this.desiredFor(state, cfg);
    if (!entry || this.agents.get(state.record.id) !== state) return;
    if (state.readProblems.delete(cfg.id)) this.clearSourceProblem(state.record.id, cfg.id);
    this.pusher?.pushDesired(state.record.id, entry);
  }

  /** The desired entry of one agent's project at the watch's commit; a failed read is that agent's source problem. */
  private async desiredFor(state: AgentState, cfg: ManifestProjectConfig): Promise<DesiredEntry | undefined> {
    const w: Watch | undefined = this.watches.get(watchKey(cfg.id, cfg.ref as GitRef));
    const commit = w?.commit;
    const entry = w && desiredAt(w, cfg, this.readFiles);
    if (!entry || !commit) return undefined;
    try {
      return await entry;
    } catch (err) {
      const problem = this.readProblem(state, cfg, commit, err);
      this.log.warn(
        { project: cfg.id, commit, agent: state.record.name, problem: problem.message },
        'cannot read manifests',
      );
      state.readProblems.add(cfg.id);
      this.tellSourceProblem(state.record.id, cfg.id, problem);
      return undefined;
    }
  }

  /**
   * The problem a failed manifest read gives one agent. A file matched by two globs is the
   * config's fault (GitLab refuses it), so it names the glob's line in config.yaml; any other
   * failure is the project's, prefixed with project@commit.
   */
  private readProblem(state: AgentState, cfg: ManifestProjectConfig, commit: string, err: unknown): ProblemReport {
    const overlap = globsOverlapOf(err);
    const index = state.parsed ? state.parsed.config.projects.findIndex((p) => p.id === cfg.id) : -1;
    if (overlap && state.parsed && index >= 0) {
      return globsOverlapProblem(agentConfigPath(state.record.name), state.parsed, index, overlap.globs, overlap.file);
    }
    const { code, message } = problemOf(err, ProblemCode.GIT_ERROR);
    return { code, message: `${cfg.id}@${commit.slice(0, 12)}: ${message}` };
  }

  // ---- problems: into the registry status and to the agent's sessions ----

  /** Config problems of one agent: kept (bounded), into its status, and to its sessions. */
  private setConfigProblems(state: AgentState, problems: readonly ProblemReport[]): void {
    state.configProblems = boundProblems(problems);
    this.options.registry.setConfigProblems(state.record.id, state.configProblems);
    this.pusher?.pushError(state.record.id, { type: 'error', problems: state.configProblems });
  }

  /** A Git problem with one project, for one agent: into its status and to its sessions. */
  private tellSourceProblem(agentId: string, project: string, problem: ProblemReport): void {
    this.options.registry.setSourceProblem(agentId, project, problem);
    this.pusher?.pushError(agentId, { type: 'error', project, problems: [problem] });
  }

  /** The problem of a watch an agent just joined, told to it if it is still here. */
  private tellIfKnown(agentId: string, project: string, problem: ProblemReport): void {
    if (this.agents.has(agentId)) this.tellSourceProblem(agentId, project, problem);
  }

  /** Removes a Git problem from an agent's status and tells its sessions it cleared. */
  private clearSourceProblem(agentId: string, project: string): void {
    const had = this.options.registry.clearSourceProblem(agentId, project);
    // Also when the status had none (the server restarted meanwhile): the agent may still show it.
    this.pusher?.pushError(agentId, { type: 'error', project, problems: [] });
    if (had) this.log.debug({ agent: agentId, project }, 'source problem cleared');
  }

  // ---- owners of background work ----

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
}

/** The two glob indexes and the file of a GIT_GLOBS_OVERLAP error from the Git layer, if `err` is one. */
function globsOverlapOf(err: unknown): { globs: readonly [number, number]; file: string } | undefined {
  if (!(err instanceof GitopsError) || err.code !== 'GIT_GLOBS_OVERLAP') return undefined;
  const data = err.data as { globs?: unknown; file?: unknown } | undefined;
  const globs = data?.globs;
  if (
    !Array.isArray(globs) ||
    globs.length !== 2 ||
    !globs.every((g) => Number.isInteger(g)) ||
    typeof data?.file !== 'string'
  )
    return undefined;
  return { globs: [globs[0] as number, globs[1] as number], file: data.file };
}
