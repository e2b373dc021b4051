/**
 * The agent registry: which agents exist (agents.json and its journal, written by the `agent` CLI
 * commands) and what the server knows about each (the `status/` shards, written by the server;
 * state-files.ts). The server's parts change a status only through the `record…`, `set…` and
 * `clear…` methods, one per fact, which also bound what is kept.
 *
 * The server process holds one Registry. It re-reads agents.json and its journal when either
 * changes (fs.watch on the state directory, because an atomic rename replaces the file's inode,
 * plus a cheap stat poll as a fallback), so a revoke from another process takes effect within a poll interval and
 * listeners
 * can close that agent's sessions. Status changes are kept in memory and flushed debounced, one
 * write at a time, rewriting only the status shards (state-files.ts) whose agents changed.
 *
 * Memory per agent is bounded: one record, one cached public key, one status with at most
 * MAX_PROJECTS applied entries and MAX_PROBLEMS problems of at most MAX_TEXT characters, and at
 * most MAX_PROJECTS health records of MAX_HEALTH_OBJECTS objects each (protocol 2).
 *
 * What it reads is not trusted to be well-formed (state-files.ts validates every record): a
 * record that fails is skipped and reported (log, health(), `agent list`); an agent the server
 * already knows keeps its last valid record. agents.json that disappears or stops parsing after
 * the server has read it is "unreadable": the server keeps every agent it knows (adding the
 * journal's new ones), says so in health() and the log, and tells no agent it is revoked.
 */
import { watch, promises as fs, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { syncDir } from '../common/atomic-file.js';
import { UserError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { mapLimit } from '../common/map-limit.js';
import { silentLogger } from '../common/logger.js';
import type { AgentKey } from '../protocol/jwt.js';
import type { HealthMessage, ProblemReport } from '../protocol/messages.js';
import { HEALTH_RESULTS, type HealthResult, type HealthState } from '../protocol/vocabulary.js';
import { generateToken, publicKeyFromX } from '../protocol/token.js';
import { allowEntryProblem, projectIdProblem, quoteId } from './project-id.js';
import {
  AGENTS_FILE,
  AGENTS_JOURNAL,
  AGENT_NAME_PATTERN,
  MAX_ALLOW_PROJECTS,
  STATUS_DIR,
  appendAgents,
  STATUS_FILE,
  ensureStateDir,
  readAgents,
  readAllStatus,
  stateProblemWhere,
  statusShardOf,
  updateAgentsFile,
  writeStatusShard,
  type AgentRecord,
  type AgentStatus,
  type AppliedRecord,
  type DriftRecord,
  type HealthObjectRecord,
  type HealthRecord,
  type StateProblem,
} from './state-files.js';

export type {
  AgentRecord,
  AgentStatus,
  AppliedRecord,
  DriftRecord,
  HealthObjectRecord,
  HealthRecord,
  StateProblem,
} from './state-files.js';

const MAX_PROJECTS = 100;
/** Status shards written at once. */
const STATUS_WRITES_IN_FLIGHT = 8;
const MAX_PROBLEMS = 20;
const MAX_TEXT = 1000;
/** Objects not current kept per health record: enough to act on, bounded whatever the agent sends. */
export const MAX_HEALTH_OBJECTS = 20;

/** What a health frame did to the registry (the hub logs a change of result once). */
export type HealthChange =
  /** For another commit or digest than the project's latest status: an older wait's late word. */
  | { kind: 'stale'; statusCommit: string }
  /** Kept; `changed` when the commit or the result differs from the record before. */
  | { kind: 'changed' | 'same'; record: HealthRecord }
  /** Not kept: an unknown agent, or a new project beyond MAX_PROJECTS. */
  | { kind: 'dropped' };

// ---- commands against the state dir (used by the CLI, in their own process) ----

/** Registers an agent and returns its token (shown once, never stored). */
export async function createAgent(
  stateDir: string,
  name: string,
  configProject: string,
  now = new Date(),
  options: { allowProjects?: readonly string[] } = {},
): Promise<{ record: AgentRecord; token: string }> {
  return (await createAgents(stateDir, [{ name, configProject, ...options }], now))[0];
}

/** One agent for {@link createAgents}. */
export interface NewAgent {
  name: string;
  configProject: string;
  /** Extra manifest projects (`group/name`) or group prefixes (`group/`) it may read. */
  allowProjects?: readonly string[];
}

/** Checks allow-list entries (AGENT_BAD_ALLOW_PROJECT) and returns them without duplicates, in order. */
export function checkAllowProjects(name: string, entries: readonly string[]): string[] {
  const out: string[] = [];
  for (const entry of entries) {
    const problem = allowEntryProblem(entry);
    if (problem !== undefined)
      throw new UserError('AGENT_BAD_ALLOW_PROJECT', `agent ${name}: --allow-project ${quoteId(entry)}: ${problem}`);
    if (!out.includes(entry)) out.push(entry);
  }
  if (out.length > MAX_ALLOW_PROJECTS)
    throw new UserError(
      'AGENT_BAD_ALLOW_PROJECT',
      `agent ${name}: at most ${MAX_ALLOW_PROJECTS} allowed projects (${out.length} given); allow a group prefix such as group/ instead`,
    );
  return out;
}

/**
 * Registers several agents in ONE locked write of agents.json (all or none) and returns their
 * tokens in order. For provisioning a fleet: K single creates rewrite the file K times.
 */
export async function createAgents(
  stateDir: string,
  agents: readonly NewAgent[],
  now = new Date(),
): Promise<{ record: AgentRecord; token: string }[]> {
  const names = new Set<string>();
  const allowed: string[][] = [];
  for (const { name, configProject, allowProjects } of agents) {
    if (!AGENT_NAME_PATTERN.test(name)) {
      throw new UserError(
        'AGENT_BAD_NAME',
        `agent name ${quoteId(name)}: use lowercase letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit`,
      );
    }
    // The server reads this path from the Git host: refuse here what it would refuse there.
    const problem = projectIdProblem(configProject.trim());
    if (problem !== undefined)
      throw new UserError(
        'AGENT_BAD_PROJECT',
        `agent ${name}: --config-project ${quoteId(configProject)}: ${problem}; name a project such as group/kubernetes-agent`,
      );
    if (names.has(name)) throw new UserError('AGENT_EXISTS', `agent ${name}: listed twice`);
    names.add(name);
    allowed.push(checkAllowProjects(name, allowProjects ?? []));
  }
  const created = agents.map(({ name, configProject }, i) => {
    const gen = generateToken();
    const record: AgentRecord = {
      id: gen.agentId,
      name,
      configProject: configProject.trim(),
      publicKey: gen.publicKeyX,
      createdAt: now.toISOString(),
      ...(allowed[i].length ? { allowProjects: allowed[i] } : {}),
    };
    return { record, token: gen.token };
  });
  // Appended to agents.journal (see state-files.ts): no rewrite of every other agent per create.
  await appendAgents(
    stateDir,
    created.map((c) => c.record),
    (file) => {
      for (const a of file.agents) {
        if (!a.revokedAt && names.has(a.name))
          throw new UserError('AGENT_EXISTS', `agent ${a.name}: already exists (revoke it first to issue a new token)`);
      }
    },
  );
  return created;
}

/**
 * Marks the active agent `name` revoked; running servers close its sessions within a second. A
 * record that fails validation but carries this name is revoked too (a server that knew the agent
 * before the record broke still holds its last valid version; revokedAt tells it to drop it).
 */
export async function revokeAgent(stateDir: string, name: string, now = new Date()): Promise<AgentRecord> {
  return updateAgentsFile(stateDir, (file, skipped) => {
    const index = file.agents.findIndex((a) => a.name === name && !a.revokedAt);
    const broken = skipped.map((r) => (r.name === name && !r.revokedAt ? { ...r, revokedAt: now.toISOString() } : r));
    const brokenHit = broken.some((r, i) => r !== skipped[i]);
    if (index < 0 && !brokenHit)
      throw new UserError('AGENT_NOT_FOUND', `agent ${name}: no active agent with this name`);
    if (index < 0) {
      const raw = broken.find((r, i) => r !== skipped[i])!;
      const result = {
        id: String(raw.id),
        name,
        configProject: String(raw.configProject),
        publicKey: '',
        createdAt: String(raw.createdAt),
        revokedAt: now.toISOString(),
      };
      return { file, result, skipped: broken };
    }
    const revoked = { ...file.agents[index], revokedAt: now.toISOString() };
    const agents = file.agents.slice();
    agents[index] = revoked;
    return { file: { ...file, agents }, result: revoked, skipped: broken };
  });
}

/**
 * Adds and removes entries of the active agent's allowProjects in one crash-safe rewrite of
 * agents.json; a running server picks the change up within a second (RegistryChange.changed).
 * Removing an entry the agent does not have is an error (a typo must not look like success).
 */
export async function updateAllowProjects(
  stateDir: string,
  name: string,
  change: { allow?: readonly string[]; disallow?: readonly string[] },
): Promise<AgentRecord> {
  const allow = checkAllowProjects(name, change.allow ?? []);
  const disallow = change.disallow ?? [];
  return updateAgentsFile(stateDir, (file) => {
    const index = file.agents.findIndex((a) => a.name === name && !a.revokedAt);
    if (index < 0) throw new UserError('AGENT_NOT_FOUND', `agent ${name}: no active agent with this name`);
    const before = file.agents[index].allowProjects ?? [];
    for (const entry of disallow) {
      if (!before.includes(entry)) {
        throw new UserError(
          'AGENT_NOT_ALLOWED',
          `agent ${name}: ${quoteId(entry)} is not among its allowed projects (${before.length ? before.join(', ') : 'none'})`,
        );
      }
    }
    const next = checkAllowProjects(name, [...before.filter((e) => !disallow.includes(e)), ...allow]);
    const { allowProjects: _old, ...rest } = file.agents[index];
    const updated: AgentRecord = { ...rest, ...(next.length ? { allowProjects: next } : {}) };
    const agents = file.agents.slice();
    agents[index] = updated;
    return { file: { ...file, agents }, result: updated };
  });
}

export interface AgentListRow extends AgentRecord {
  status?: AgentStatus;
}

/** Agent records joined with the last status the server wrote. */
export async function listAgents(stateDir: string): Promise<AgentListRow[]> {
  return (await listAgentsReport(stateDir)).rows;
}

/**
 * {@link listAgents} with what was skipped, as lines for a person: records that fail validation
 * (file:line and why) and an agents.json that cannot be read at all.
 */
export async function listAgentsReport(stateDir: string): Promise<{ rows: AgentListRow[]; warnings: string[] }> {
  const [agents, status] = await Promise.all([readAgents(stateDir), readAllStatus(stateDir)]);
  const warnings: string[] = [];
  if (agents.fileProblem !== undefined)
    warnings.push(`${path.join(stateDir, AGENTS_FILE)}: ${agents.fileProblem}; only the journal's agents are listed`);
  for (const p of agents.invalid)
    warnings.push(`${stateProblemWhere(p)}: agent record skipped${p.name ? ` (${p.name})` : ''}: ${p.problem}`);
  for (const p of status.problems) warnings.push(`${stateProblemWhere(p)}: status skipped: ${p.problem}`);
  return { rows: agents.agents.map((a) => ({ ...a, status: status.agents[a.id] })), warnings };
}

/** What one status flush wrote (for metrics, logs and tests). */
export interface FlushResult {
  files: number;
  bytes: number;
}

// ---- the server's live registry ----

export interface RegistryChange {
  added: AgentRecord[];
  revoked: AgentRecord[];
  /** Active agents whose config project or allowProjects changed (the new records). */
  changed?: AgentRecord[];
}

/** What the registry could not read: for readiness, metrics and logs. */
export interface RegistryHealth {
  /** Set while agents.json is missing or unreadable after it was read (the known agents are kept). */
  agentsFileProblem?: string;
  /** Agent records skipped by the last read (agents.json and journal). */
  invalidRecords: number;
  /** Status entries or files skipped at start-up. */
  invalidStatus: number;
}

export interface RegistryOptions {
  logger?: Logger;
  /** Fallback stat poll of agents.json, ms (default 250). */
  pollMs?: number;
  /** Delay before status changes are written, ms (default 500). */
  statusDebounceMs?: number;
}

export class Registry {
  private agents = new Map<string, AgentRecord>();
  private readonly keys = new Map<string, KeyObject>();
  private readonly statuses = new Map<string, AgentStatus>();
  private readonly listeners = new Set<(change: RegistryChange) => void>();
  private watcher?: FSWatcher;
  private pollTimer?: NodeJS.Timeout;
  private flushTimer?: NodeJS.Timeout;
  /** Status shards changed since the last write. */
  private readonly dirty = new Set<string>();
  /** Shard per agent id, computed once (a flush looks up every agent). */
  private readonly shards = new Map<string, string>();
  /** The write in progress; flushes never overlap, so an older write cannot land last. */
  private flushing?: Promise<FlushResult>;
  /** status.json of an earlier version is still on disk (removed after the first full write). */
  private legacyStatus = false;
  private lastStamp = '';
  private reloading?: Promise<void>;
  private reloadAgain = false;
  private closed = false;
  /** agents.json has been read by this process: from then on its absence means "unreadable". */
  private sawAgentsFile = false;
  private agentsFileProblem?: string;
  private invalidRecords: StateProblem[] = [];
  private invalidKey = '';
  private invalidStatus = 0;
  private readonly log: Logger;

  private constructor(
    readonly stateDir: string,
    private readonly options: RegistryOptions,
  ) {
    this.log = options.logger ?? silentLogger();
  }

  /** Loads the state dir (creating it) and starts following agents.json. */
  static async open(stateDir: string, options: RegistryOptions = {}): Promise<Registry> {
    const registry = new Registry(stateDir, options);
    await ensureStateDir(stateDir);
    const previous = await readAllStatus(stateDir);
    registry.invalidStatus = previous.problems.length;
    for (const p of previous.problems.slice(0, 20))
      registry.log.warn({ file: p.file, agentId: p.agentId, problem: p.problem }, 'status record skipped');
    for (const [id, s] of Object.entries(previous.agents)) {
      // Git and config problems are found again by this process (and cleared when gone); the
      // legacy single `lastError` gave way to per-project errors.
      const { sourceProblems: _again, lastError: _legacy, ...rest } = s as AgentStatus & { lastError?: unknown };
      registry.statuses.set(id, { ...rest, connected: false, sessions: 0 });
      registry.dirty.add(registry.shardOf(id));
    }
    registry.legacyStatus = previous.legacy;
    await registry.reload();
    registry.follow();
    return registry;
  }

  /** What the last read could not use (see RegistryHealth). */
  health(): RegistryHealth {
    return {
      ...(this.agentsFileProblem !== undefined ? { agentsFileProblem: this.agentsFileProblem } : {}),
      invalidRecords: this.invalidRecords.length,
      invalidStatus: this.invalidStatus,
    };
  }

  /** Active and revoked agents. */
  all(): AgentRecord[] {
    return [...this.agents.values()];
  }

  active(): AgentRecord[] {
    return this.all().filter((a) => !a.revokedAt);
  }

  get(id: string): AgentRecord | undefined {
    return this.agents.get(id);
  }

  /** For JWT verification: the agent's public key and whether it is revoked. */
  lookupKey = (kid: string): AgentKey | undefined => {
    const record = this.agents.get(kid);
    if (!record) return undefined;
    let key = this.keys.get(kid);
    if (!key) {
      key = publicKeyFromX(record.publicKey);
      this.keys.set(kid, key);
    }
    return { publicKey: key, revoked: Boolean(record.revokedAt) };
  };

  onChange(listener: (change: RegistryChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Current status of an agent (a fresh one if none yet). */
  status(id: string): AgentStatus {
    let s = this.statuses.get(id);
    if (!s) {
      s = { connected: false, sessions: 0, applied: {} };
      this.statuses.set(id, s);
    }
    return s;
  }

  // ---- status writes: one method per fact, each bounded here, so callers never edit a record ----

  /** The agent's sessions changed (hub): `connected` follows the count. */
  recordSessions(id: string, sessions: number, at = new Date().toISOString()): void {
    this.updateStatus(id, (s) => {
      s.connected = sessions > 0;
      s.sessions = sessions;
      s.lastSeen = at;
    });
  }

  /** A session's hello: the agent's version. */
  recordHello(id: string, agentVersion: string, at: string): void {
    this.updateStatus(id, (s) => {
      s.agentVersion = agentVersion.slice(0, 64);
      s.lastSeen = at;
    });
  }

  /**
   * Records an applied/failed report, keeping the per-agent size bounded. A status for another
   * commit or digest drops the project's health: it was the health of what is no longer applied.
   */
  recordApplied(id: string, project: string, entry: AppliedRecord): void {
    this.updateStatus(id, (s) => {
      if (!Object.hasOwn(s.applied, project) && Object.keys(s.applied).length >= MAX_PROJECTS) return;
      const key = project.slice(0, 255);
      const next = { ...entry, commit: entry.commit.slice(0, 64), digest: entry.digest.slice(0, 128) };
      const before = Object.hasOwn(s.applied, key) ? s.applied[key] : undefined;
      if (before && (before.commit !== next.commit || before.digest !== next.digest)) dropEntry(s, 'health', key);
      setEntry(s.applied, key, next);
    });
  }

  /**
   * The latest health of one project (protocol 2), bounded: counts per state and the first
   * MAX_HEALTH_OBJECTS objects that are not current. A frame for another commit or digest than the
   * project's latest status is ignored (`stale`): a wait of an older commit must not overwrite
   * the newer one's health.
   */
  recordHealth(id: string, message: HealthMessage, at: string): HealthChange {
    if (!this.agents.has(id)) return { kind: 'dropped' };
    const s = this.status(id);
    const project = message.project.slice(0, 255);
    const applied = Object.hasOwn(s.applied, project) ? s.applied[project] : undefined;
    if (applied && (applied.commit !== message.commit.slice(0, 64) || applied.digest !== message.digest.slice(0, 128)))
      return { kind: 'stale', statusCommit: applied.commit };
    const health = s.health ?? {};
    const before = Object.hasOwn(health, project) ? health[project] : undefined;
    if (!before && Object.keys(health).length >= MAX_PROJECTS) return { kind: 'dropped' };
    const record = healthRecord(message, at);
    this.updateStatus(id, (st) => {
      st.lastSeen = at;
      setEntry(health, project, record);
      st.health = health;
    });
    const changed = !before || before.commit !== record.commit || before.result !== record.result;
    return { kind: changed ? 'changed' : 'same', record };
  }

  /** (agent, project) pairs per latest health result, over active agents: for the metrics gauge. */
  healthResults(): Record<HealthResult, number> {
    const counts = Object.fromEntries(HEALTH_RESULTS.map((r) => [r, 0])) as Record<HealthResult, number>;
    for (const [id, s] of this.statuses) {
      if (!s.health || this.agents.get(id)?.revokedAt !== undefined) continue;
      for (const h of Object.values(s.health)) if (Object.hasOwn(counts, h.result)) counts[h.result]++;
    }
    return counts;
  }

  /**
   * The apply problems of one project from the agent's latest status for it; `undefined` (a good
   * apply) removes the project's entry, the other projects keep theirs.
   */
  recordProjectProblems(
    id: string,
    project: string,
    at: string,
    report?: { commit: string; problems: readonly ProblemReport[] },
  ): void {
    this.updateStatus(id, (s) => {
      s.lastSeen = at;
      if (!report) {
        if (s.projectErrors && Object.hasOwn(s.projectErrors, project)) {
          delete s.projectErrors[project];
          if (Object.keys(s.projectErrors).length === 0) delete s.projectErrors;
        }
        return;
      }
      const errors = s.projectErrors ?? {};
      if (!Object.hasOwn(errors, project) && Object.keys(errors).length >= MAX_PROJECTS) return;
      setEntry(errors, project, { at, commit: report.commit, problems: boundProblems(report.problems) });
      s.projectErrors = errors;
    });
  }

  /** A drift the agent reverted (or saw): counted, the latest kept. */
  recordDrift(id: string, drift: DriftRecord, at: string): void {
    this.updateStatus(id, (s) => {
      s.lastSeen = at;
      s.driftCount = (s.driftCount ?? 0) + 1;
      s.lastDrift = {
        project: drift.project,
        object: drift.object.slice(0, 300),
        action: drift.action,
        manager: drift.manager?.slice(0, 100),
        at: drift.at.slice(0, 40),
      };
    });
  }

  /** Problems with the agent's latest config.yaml (the last valid config stays in force). */
  setConfigProblems(id: string, problems: readonly ProblemReport[]): void {
    const bounded = boundProblems(problems);
    this.updateStatus(id, (s) => {
      s.configProblems = bounded;
    });
  }

  /**
   * Removes the config problems, if the agent has any: a status object (and a shard write) for each
   * of 10,000 agents that never had a problem would be memory and disk for nothing.
   */
  clearConfigProblems(id: string): void {
    if (!this.statuses.get(id)?.configProblems) return;
    this.updateStatus(id, (s) => {
      delete s.configProblems;
    });
  }

  /** A Git problem with one of the agent's projects (config or manifest). */
  setSourceProblem(id: string, project: string, problem: ProblemReport): void {
    const [bounded] = boundProblems([problem]);
    this.updateStatus(id, (s) => {
      s.sourceProblems = { ...(s.sourceProblems ?? {}), [project]: bounded };
    });
  }

  /** Removes the Git problem of one project; says whether there was one. */
  clearSourceProblem(id: string, project: string): boolean {
    if (!this.statuses.get(id)?.sourceProblems?.[project]) return false;
    this.updateStatus(id, (s) => {
      const { [project]: _gone, ...rest } = s.sourceProblems ?? {};
      if (Object.keys(rest).length) s.sourceProblems = rest;
      else delete s.sourceProblems;
    });
    return true;
  }

  /** Changes an agent's status in memory and schedules a write of its status shard. */
  private updateStatus(id: string, change: (s: AgentStatus) => void): void {
    if (!this.agents.has(id)) return;
    change(this.status(id));
    this.dirty.add(this.shardOf(id));
    this.scheduleFlush();
  }

  /** Writes the changed status shards now (also called on shutdown). */
  async flush(): Promise<FlushResult> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    while (this.flushing) await this.flushing.catch(() => undefined);
    if (this.dirty.size === 0) return { files: 0, bytes: 0 };
    this.flushing = this.writeDirty().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async writeDirty(): Promise<FlushResult> {
    const shards = [...this.dirty];
    this.dirty.clear();
    const byShard = new Map<string, Record<string, AgentStatus>>(shards.map((s) => [s, {}]));
    for (const [id, s] of this.statuses) {
      if (!this.agents.has(id)) continue;
      const shard = byShard.get(this.shardOf(id));
      if (shard) shard[id] = s;
    }
    const dir = path.join(this.stateDir, STATUS_DIR);
    let bytes = 0;
    try {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      // A few writes at a time: each is an fsync, and 256 at once would stall the disk for everyone.
      const written = await mapLimit([...byShard], STATUS_WRITES_IN_FLIGHT, ([shard, agents]) =>
        writeStatusShard(this.stateDir, shard, agents),
      );
      bytes = written.reduce((n, b) => n + b, 0);
      await syncDir(dir);
    } catch (err) {
      for (const s of shards) this.dirty.add(s);
      throw err;
    }
    if (this.legacyStatus) {
      await fs.rm(path.join(this.stateDir, STATUS_FILE), { force: true });
      this.legacyStatus = false;
    }
    return { files: shards.length, bytes };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    if (this.pollTimer) clearInterval(this.pollTimer);
    await this.reloading?.catch(() => undefined);
    await this.flush().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'status write failed'));
  }

  private shardOf(id: string): string {
    let shard = this.shards.get(id);
    if (shard === undefined) {
      shard = statusShardOf(id);
      this.shards.set(id, shard);
    }
    return shard;
  }

  private scheduleFlush(): void {
    if (this.flushTimer || this.closed) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flush().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'status write failed'));
    }, this.options.statusDebounceMs ?? 500);
    this.flushTimer.unref();
  }

  private follow(): void {
    try {
      this.watcher = watch(this.stateDir, { persistent: false }, (_event, name) => {
        if (name === null || name === AGENTS_FILE || name === AGENTS_JOURNAL) this.triggerReload();
      });
      this.watcher.on('error', () => undefined);
    } catch {
      // no inotify: the poll below still notices changes
    }
    this.pollTimer = setInterval(() => {
      this.stamp()
        .then((stamp) => {
          if (stamp !== this.lastStamp) this.triggerReload();
        })
        .catch(() => undefined);
    }, this.options.pollMs ?? 250);
    this.pollTimer.unref();
  }

  private triggerReload(): void {
    if (this.closed) return;
    if (this.reloading) {
      this.reloadAgain = true;
      return;
    }
    this.reloading = this.reload()
      .catch((err: unknown) =>
        this.log.error({ err: errorMessage(err) }, 'agents file unreadable; keeping the previous agents'),
      )
      .finally(() => {
        this.reloading = undefined;
        if (this.reloadAgain) {
          this.reloadAgain = false;
          this.triggerReload();
        }
      });
  }

  /** Identity of agents.json and its journal: a change to either means a reload. */
  private async stamp(): Promise<string> {
    const stamps = await Promise.all(
      [AGENTS_FILE, AGENTS_JOURNAL].map((name) =>
        fs
          .stat(path.join(this.stateDir, name))
          .then((st) => `${st.ino}:${st.mtimeMs}:${st.size}`)
          .catch(() => 'absent'),
      ),
    );
    return stamps.join('/');
  }

  private async reload(): Promise<void> {
    const stamp = await this.stamp();
    const read = await readAgents(this.stateDir);
    this.lastStamp = stamp;
    const file = path.join(this.stateDir, AGENTS_FILE);
    const unreadable = read.fileProblem ?? (!read.hasFile && this.sawAgentsFile ? 'missing' : undefined);
    if (unreadable === undefined && read.hasFile) this.sawAgentsFile = true;
    this.noteUnreadable(file, unreadable);
    this.noteInvalid(read.invalid);
    const next =
      unreadable === undefined ? this.nextFromFile(read.agents, read.invalid) : this.nextKeepingKnown(read.agents);
    const change: RegistryChange = { added: [], revoked: [], changed: [] };
    for (const [id, record] of next) {
      const before = this.agents.get(id);
      if (!before && !record.revokedAt) change.added.push(record);
      if (record.revokedAt && (!before || !before.revokedAt)) change.revoked.push(record);
      if (before && before !== record && !record.revokedAt && !before.revokedAt && !sameAccess(before, record))
        change.changed!.push(record);
    }
    for (const [id, before] of this.agents) {
      if (!next.has(id) && !before.revokedAt) change.revoked.push({ ...before, revokedAt: new Date().toISOString() });
      if (!next.has(id)) {
        this.keys.delete(id);
        if (this.statuses.delete(id)) {
          this.dirty.add(this.shardOf(id));
          this.scheduleFlush();
        }
        this.shards.delete(id);
      }
    }
    this.agents = next;
    if (change.added.length || change.revoked.length || change.changed!.length) {
      // Names of the first few only: a first load of 10,000 agents must not become one huge line.
      this.log.info(
        {
          added: change.added.length,
          revoked: change.revoked.length,
          changed: change.changed!.length,
          names: [...change.added, ...change.revoked, ...change.changed!].slice(0, 10).map((a) => a.name),
        },
        'agents changed',
      );
      for (const listener of this.listeners) listener(change);
    }
  }

  /**
   * The records of a readable agents.json (and journal). Unchanged records keep their object: the
   * fleet holds them, and 10,000 fresh copies per create would double what the records cost until
   * the old ones are collected. A known agent whose record now fails validation keeps its last
   * valid record (revoked if the broken one says revokedAt): a typo must not cut an agent off.
   */
  private nextFromFile(records: readonly AgentRecord[], invalid: readonly StateProblem[]): Map<string, AgentRecord> {
    const next = new Map(
      records.map((a) => {
        const before = this.agents.get(a.id);
        return [a.id, before && sameRecord(before, a) ? before : a];
      }),
    );
    for (const p of invalid) {
      const before = p.agentId === undefined ? undefined : this.agents.get(p.agentId);
      if (!before || next.has(before.id)) continue;
      next.set(before.id, p.revoked && !before.revokedAt ? { ...before, revokedAt: new Date().toISOString() } : before);
    }
    return next;
  }

  /** agents.json is unreadable: every known agent stays as it is; the journal may only add. */
  private nextKeepingKnown(journal: readonly AgentRecord[]): Map<string, AgentRecord> {
    const next = new Map(this.agents);
    for (const a of journal) if (!next.has(a.id)) next.set(a.id, a);
    return next;
  }

  private noteUnreadable(file: string, problem: string | undefined): void {
    if (problem === this.agentsFileProblem) return;
    if (problem !== undefined) {
      this.log.error({ file, problem, agents: this.agents.size }, 'agents file unreadable; keeping the agents known');
    } else {
      this.log.info({ file }, 'agents file readable again');
    }
    this.agentsFileProblem = problem;
  }

  /** Logs skipped records when the set changes (a reload per change would repeat them otherwise). */
  private noteInvalid(invalid: StateProblem[]): void {
    this.invalidRecords = invalid;
    const key = invalid.map((p) => `${stateProblemWhere(p)} ${p.problem}`).join('\n');
    if (key === this.invalidKey) return;
    this.invalidKey = key;
    for (const p of invalid.slice(0, 20)) {
      this.log.warn(
        { file: p.file, line: p.line, entry: p.entry, agentId: p.agentId, name: p.name, problem: p.problem },
        'agent record skipped',
      );
    }
    if (invalid.length > 20) this.log.warn({ skipped: invalid.length, logged: 20 }, 'agent records skipped');
  }
}

function sameRecord(a: AgentRecord, b: AgentRecord): boolean {
  return (
    a.name === b.name &&
    a.publicKey === b.publicKey &&
    a.createdAt === b.createdAt &&
    a.revokedAt === b.revokedAt &&
    sameAccess(a, b)
  );
}

/** Same config project and allow-list: what decides which projects the agent may read. */
function sameAccess(a: AgentRecord, b: AgentRecord): boolean {
  const x = a.allowProjects ?? [];
  const y = b.allowProjects ?? [];
  return a.configProject === b.configProject && x.length === y.length && x.every((e, i) => e === y[i]);
}

/** The bounded record of a health frame (strings clipped, not-current objects failed first). */
export function healthRecord(message: HealthMessage, at: string): HealthRecord {
  const counts: Partial<Record<HealthState, number>> = {};
  if (message.truncated) Object.assign(counts, message.truncated.counts);
  else for (const o of message.objects) counts[o.state] = (counts[o.state] ?? 0) + 1;
  const total = message.truncated?.objects ?? message.objects.length;
  // A pruned object is done once it is gone; any other once it is current.
  const done = (o: HealthMessage['objects'][number]): boolean =>
    o.pruned ? o.state === 'not_found' : o.state === 'current';
  const waiting = message.objects.filter((o) => !done(o));
  const failedFirst = [...waiting.filter((o) => o.state === 'failed'), ...waiting.filter((o) => o.state !== 'failed')];
  const objects: HealthObjectRecord[] = failedFirst.slice(0, MAX_HEALTH_OBJECTS).map((o) => ({
    id: o.id.slice(0, 300),
    state: o.state,
    ...(o.reason !== undefined ? { reason: o.reason.slice(0, 100) } : {}),
    ...(o.message !== undefined ? { message: clipText(o.message) } : {}),
    ...(o.pruned ? { pruned: true } : {}),
  }));
  return {
    commit: message.commit.slice(0, 64),
    digest: message.digest.slice(0, 128),
    result: message.result,
    total,
    counts,
    // A cut frame lists every failed and in_progress object first, but not every pruned one.
    notCurrent: message.truncated ? Math.max(0, total - (counts.current ?? 0)) : waiting.length,
    objects,
    ...(message.waitedMs !== undefined ? { waitedMs: message.waitedMs } : {}),
    at,
  };
}

/** Removes `status[field][key]`, and the field once it is empty. */
function dropEntry(status: AgentStatus, field: 'health', key: string): void {
  const map = status[field];
  if (!map || !Object.hasOwn(map, key)) return;
  delete map[key];
  if (Object.keys(map).length === 0) delete status[field];
}

const clipText = (text: string): string => (text.length > MAX_TEXT ? text.slice(0, MAX_TEXT) + '…' : text);

/**
 * Sets `record[key]` as an own data property whatever the key: a plain `record[key] = value` with
 * `__proto__` from an agent would change the object's prototype instead of storing an entry.
 */
export function setEntry<T>(record: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Bounds what an agent can make the server remember. */
export function boundProblems(problems: readonly ProblemReport[]): ProblemReport[] {
  return problems.slice(0, MAX_PROBLEMS).map((p) => ({
    ...p,
    code: p.code.slice(0, 100),
    message: clipText(p.message),
    ...(p.file !== undefined ? { file: p.file.slice(0, 300) } : {}),
    ...(p.object !== undefined ? { object: p.object.slice(0, 300) } : {}),
  }));
}
