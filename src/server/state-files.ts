/**
 * Files in the server's `--state-dir`, shared by the running server and the `agent` CLI commands
 * (separate processes):
 *
 * - `agents.json`: agent records (public keys and metadata only). Written by the CLI under a lock
 *   file; the server re-reads it on change.
 * - `agents.journal`: agents created since agents.json was last written, one JSON record per line,
 *   appended (and fsynced) by `agent create` under the same lock, so a create at 10,000 agents
 *   does not rewrite a 1.5 MB file. Readers take agents.json, then journal records whose id it
 *   does not hold (ids are random: a journal line only ever adds an agent, it can never undo a
 *   revoke). Any full write of agents.json (revoke, or a create once the journal holds
 *   JOURNAL_MAX records) folds the journal in and deletes it; a crash in between leaves records in
 *   both, which reads the same. A torn last line (a crash mid-append, before the command said it
 *   succeeded) is ignored and cut off by the next append.
 * - `status/<xx>.json`: what the server knows about each agent (connected, last seen, applied
 *   commits, errors), in 256 shards by agent (`xx` = first byte of sha1(id), hex). Written by the
 *   server only, and only the shards that changed: with 10,000 agents one agent's change rewrites
 *   about 40 agents' status instead of all of them. Read by `agent list`. (`status.json`, the
 *   single file of earlier versions, is still read and is removed after the first write.)
 *
 * Every write is crash-safe: a temporary file in the same directory, fsync, rename, fsync of the
 * directory. Files are mode 0600 and the directory 0700, because they describe the fleet (a
 * directory this process does not own and cannot tighten is used when judgeLooseStateDir says it
 * is safe: group-writable, or a mounted volume).
 *
 * Every record read back is checked against a schema with bounds (AgentRecordSchema,
 * AgentStatusSchema): a record that fails is skipped and reported as a StateProblem naming its
 * file and line (or entry), never trusted and never fatal. Writers keep such agent records as
 * they are (a rewrite must not silently delete what a person may still repair); a journal line
 * that is not JSON at all is dropped by the next full rewrite. An agents.json that is not JSON
 * or not `{"version":1,"agents":[...]}` is reported as `fileProblem` to readers (the server keeps
 * the agents it knows) and refused by writers (STATE_CORRUPT), which would otherwise replace it.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import path from 'node:path';
import { syncDir, writeFileAtomic } from '../common/atomic-file.js';
import { z } from 'zod';
import { RetryableError, UserError } from '../common/errors.js';
import type { ProblemReport } from '../protocol/messages.js';
import { HEALTH_RESULTS, HEALTH_STATES, type HealthResult, type HealthState } from '../protocol/vocabulary.js';
import { allowEntryProblem, projectIdProblem } from './project-id.js';

export const AGENTS_FILE = 'agents.json';
/** Agents appended since the last full write of agents.json (see the header). */
export const AGENTS_JOURNAL = 'agents.journal';
/** Journal records after which a create rewrites agents.json instead of appending. */
const JOURNAL_MAX = 1000;
/** Status of every agent in one file: written by earlier versions, read for migration. */
export const STATUS_FILE = 'status.json';
/** Folder of status shards. */
export const STATUS_DIR = 'status';
const SHARD_FILE = /^[0-9a-f]{2}\.json$/;
const LOCK_FILE = 'agents.lock';
/** A lock older than this is left over from a crashed command and is taken over. */
const STALE_LOCK_MS = 10_000;

export interface AgentRecord {
  /** 32 hex characters; the JWT `kid`. */
  id: string;
  /** Unique, as in `.gitlab/agents/<name>/config.yaml`. */
  name: string;
  configProject: string;
  /** Raw Ed25519 public key, base64url (JWK `x`). */
  publicKey: string;
  createdAt: string;
  revokedAt?: string;
  /**
   * Manifest projects this agent may read besides its config project's group (see
   * project-access.ts): exact paths `group/name` or group prefixes ending in '/'. Set by
   * `agent create --allow-project` and `agent allow|disallow`.
   */
  allowProjects?: string[];
}

export interface AgentsFile {
  version: 1;
  agents: AgentRecord[];
}

export interface AppliedRecord {
  commit: string;
  digest: string;
  result: 'applied' | 'failed' | 'partial' | 'reported';
  at: string;
  durationMs?: number;
}

export interface DriftRecord {
  project: string;
  object: string;
  action: string;
  manager?: string;
  at: string;
}

/** Problems of the latest failed or partial apply of one project. */
export interface ProjectError {
  at: string;
  commit?: string;
  problems: ProblemReport[];
}

/** One object of a health record that is not current (or, pruned, not gone yet). */
export interface HealthObjectRecord {
  id: string;
  state: HealthState;
  reason?: string;
  message?: string;
  pruned?: boolean;
}

/** The latest health an agent reported for one project (protocol 2), bounded by the registry. */
export interface HealthRecord {
  commit: string;
  digest: string;
  result: HealthResult;
  /** Objects followed, over the whole report (also when the agent's frame was cut). */
  total: number;
  /** Objects per state (states with none left out). */
  counts: Partial<Record<HealthState, number>>;
  /** Objects not current (pruned ones: not gone yet), failed included. */
  notCurrent: number;
  /** The first of them (failed first) with what a person can act on. */
  objects: HealthObjectRecord[];
  /** From the end of the apply to the result (absent while progressing). */
  waitedMs?: number;
  /** When the server received it. */
  at: string;
}

/** What the server knows about one agent; bounded in size whatever the agent sends. */
export interface AgentStatus {
  connected: boolean;
  sessions: number;
  lastSeen?: string;
  agentVersion?: string;
  applied: Record<string, AppliedRecord>;
  /**
   * The agent's apply problems per manifest project, from its latest status for that project: a
   * successful apply of the project removes its entry (config and Git problems are kept apart).
   */
  projectErrors?: Record<string, ProjectError>;
  /** Problems with the latest config.yaml (the last valid config stays in force). */
  configProblems?: ProblemReport[];
  /** Problems reading the agent's Git projects (unreachable host, deleted branch). */
  sourceProblems?: Record<string, ProblemReport>;
  lastDrift?: DriftRecord;
  driftCount?: number;
  /** The latest health per manifest project (agents of protocol 2; none for version 1). */
  health?: Record<string, HealthRecord>;
}

export interface StatusFile {
  version: 1;
  writtenAt: string;
  agents: Record<string, AgentStatus>;
}

/** Agent names follow GitLab's rule (a DNS label). */
export const AGENT_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Agent ids (the JWT `kid`): 16 random bytes, hex. */
export const AGENT_ID_PATTERN = /^[0-9a-f]{32}$/;
/** Entries of an agent's allowProjects. */
export const MAX_ALLOW_PROJECTS = 100;
/** A status shard larger than this is not read (the server never writes one near it). */
const MAX_STATUS_FILE_BYTES = 64 * 1024 * 1024;

// ---- schemas of what is read back (bounds well above what the writers produce) ----

const fromCheck =
  (check: (s: string) => string | undefined) =>
  (value: string, ctx: z.RefinementCtx): void => {
    const problem = check(value);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  };
const time = z
  .string()
  .max(64)
  .refine((t) => !Number.isNaN(Date.parse(t)), 'not a date');

export const AgentRecordSchema = z.object({
  id: z.string().regex(AGENT_ID_PATTERN, 'expected 32 lowercase hex characters'),
  name: z.string().max(63).regex(AGENT_NAME_PATTERN, 'expected a DNS label'),
  configProject: z.string().superRefine(fromCheck(projectIdProblem)),
  publicKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'expected a base64url Ed25519 public key (43 characters)'),
  createdAt: time,
  revokedAt: time.optional(),
  allowProjects: z
    .array(z.string().superRefine(fromCheck(allowEntryProblem)))
    .max(MAX_ALLOW_PROJECTS)
    .optional(),
});

const text = (max: number): z.ZodString => z.string().max(max);
/** Maps from project (or similar) keys; at most `max` entries. */
const boundedMap = <T extends z.ZodType>(value: T, max = 1000) =>
  z.record(text(1000), value).refine((m) => Object.keys(m).length <= max, `at most ${max} entries`);
const StoredProblem = z.object({
  code: text(200),
  message: text(4000),
  file: text(1000).optional(),
  line: z.number().int().optional(),
  object: text(1000).optional(),
});
// Status times are shown, never computed with: any bounded string will do.
const at = text(64);
const StoredApplied = z.object({
  commit: text(128),
  digest: text(256),
  result: z.enum(['applied', 'failed', 'partial', 'reported']),
  at,
  durationMs: z.number().nonnegative().optional(),
});
const StoredHealth = z.object({
  commit: text(128),
  digest: text(256),
  result: z.enum(HEALTH_RESULTS),
  total: z.number().int().nonnegative(),
  counts: z.partialRecord(z.enum(HEALTH_STATES), z.number().int().nonnegative()),
  notCurrent: z.number().int().nonnegative(),
  objects: z
    .array(
      z.object({
        id: text(1000),
        state: z.enum(HEALTH_STATES),
        reason: text(300).optional(),
        message: text(4000).optional(),
        pruned: z.boolean().optional(),
      }),
    )
    .max(100),
  waitedMs: z.number().nonnegative().optional(),
  at,
});
export const AgentStatusSchema = z.object({
  connected: z.boolean(),
  sessions: z.number().int().nonnegative(),
  lastSeen: at.optional(),
  agentVersion: text(200).optional(),
  applied: boundedMap(StoredApplied),
  projectErrors: boundedMap(
    z.object({ at, commit: text(128).optional(), problems: z.array(StoredProblem).max(100) }),
  ).optional(),
  configProblems: z.array(StoredProblem).max(100).optional(),
  sourceProblems: boundedMap(StoredProblem).optional(),
  lastDrift: z
    .object({ project: text(1000), object: text(1000), action: text(100), manager: text(1000).optional(), at })
    .optional(),
  driftCount: z.number().int().nonnegative().optional(),
  health: boundedMap(StoredHealth).optional(),
});

/** A record of the state dir that was skipped: where it is and why. */
export interface StateProblem {
  /** Path of the file. */
  file: string;
  /** 1-based line, when the file has one record per line. */
  line?: number;
  /** 0-based index in agents.json's `agents` array, when no line is known. */
  entry?: number;
  /** The record's agent id, when it has a usable one. */
  agentId?: string;
  /** The record's name (agent records), when it has a usable one. */
  name?: string;
  /** An agent record that says it is revoked (its `revokedAt` is a non-empty string). */
  revoked?: boolean;
  problem: string;
}

/** `file:line` (or `file agents[i]`) for messages. */
export function stateProblemWhere(p: StateProblem): string {
  if (p.line !== undefined) return `${p.file}:${p.line}`;
  if (p.entry !== undefined) return `${p.file} agents[${p.entry}]`;
  return p.file;
}

/** The first issue of a failed parse, with its field path; bounded. */
function schemaProblem(error: z.ZodError): string {
  const issue = error.issues[0];
  const field = issue?.path.length ? `${issue.path.join('.')}: ` : '';
  const more = error.issues.length > 1 ? ` (+${error.issues.length - 1} more)` : '';
  return `${field}${issue?.message ?? 'invalid'}${more}`.slice(0, 500);
}

/** What a skipped agent record still tells: a usable id and name, and whether it says it is revoked. */
function recordHints(raw: unknown): Pick<StateProblem, 'agentId' | 'name' | 'revoked'> {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return {};
  const r = raw as Record<string, unknown>;
  return {
    ...(typeof r.id === 'string' && AGENT_ID_PATTERN.test(r.id) ? { agentId: r.id } : {}),
    ...(typeof r.name === 'string' && AGENT_NAME_PATTERN.test(r.name) ? { name: r.name } : {}),
    ...(typeof r.revokedAt === 'string' && r.revokedAt !== '' ? { revoked: true } : {}),
  };
}

/** A state dir this process could not make 0700, but may use: what the operator should know. */
export interface LooseStateDir {
  /** Permission bits, octal with the special bits: "2775". */
  mode: string;
  /** Numeric owner, "uid:gid". */
  owner: string;
  /** Who else may do what: "group-writable", "writable by every user (a mounted volume)", ... */
  looseness: string;
  /** Why it could not be tightened: "not its owner", or chmod's error code. */
  why: string;
}

/** What stat and access said about a state dir whose chmod 0700 failed. */
export interface StateDirFacts {
  mode: number;
  uid: number;
  gid: number;
  /** This process's uid and gid (-1 when the platform has none). */
  processUid: number;
  processGid: number;
  /** This process can create files in it (access W_OK | X_OK). */
  writable: boolean;
  /** chmod's error code, e.g. EPERM. */
  chmodError: string;
  /** It is the root of a mounted file system (another device than its parent folder's). */
  mountPoint: boolean;
}

const octal = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0');

/**
 * Whether a state dir that could not be made 0700 may be used (see docs/operations.md, "The state
 * dir"). Refused: a folder this process cannot write; and a world-writable one (sticky bit or not)
 * that is a plain folder, which any user could have made so, waiting for the server to use it
 * (anyone could replace agents.json, or create agents.journal before the first `agent create`
 * appends to it, and so add an agent of their own). Accepted, with a warning: one only its owner
 * and group may write, as a Kubernetes volume with `fsGroup` is (root:<fsGroup> 2775: the group is
 * the pod's own), since every file is written 0600 and every folder inside 0700; and the root of a
 * mounted volume even when world-writable, since only root mounts and so chose it: an emptyDir is
 * 0777 (2777 with fsGroup), and so are local-path and hostPath volumes (kind, k3s).
 */
export function judgeLooseStateDir(
  dir: string,
  f: StateDirFacts,
): { ok: true; loose: LooseStateDir } | { ok: false; error: UserError } {
  const mode = octal(f.mode);
  const owner = `${f.uid}:${f.gid}`;
  const why = f.uid !== f.processUid && f.chmodError === 'EPERM' ? 'not its owner' : `chmod: ${f.chmodError}`;
  const own = `\`chown ${f.processUid} ${dir}\` (then it is made 0700)`;
  if (!f.writable) {
    return {
      ok: false,
      error: new UserError(
        'STATE_DIR_NOT_WRITABLE',
        `${dir}: the state dir (${mode}, owner ${owner}) is not writable by this process (uid ${f.processUid}, gid ${f.processGid}), which cannot change its mode either (${why}). As root run ${own}, or \`chgrp ${f.processGid} ${dir} && chmod 2770 ${dir}\`; in Kubernetes, set the pod's securityContext.fsGroup.`,
      ),
    };
  }
  if (f.mode & 0o002 && !f.mountPoint) {
    return {
      ok: false,
      error: new UserError(
        'STATE_DIR_WORLD_WRITABLE',
        `${dir}: the state dir (${mode}, owner ${owner}) is writable by every user, and this process (uid ${f.processUid}) cannot tighten it (${why}): anyone could add an agent to its registry. As its owner (or root) run \`chmod o-w ${dir}\` (its group may keep write) or ${own}.`,
      ),
    };
  }
  const looseness =
    f.mode & 0o002
      ? 'writable by every user (a mounted volume)'
      : f.mode & 0o020
        ? 'group-writable'
        : f.mode & 0o070
          ? 'readable by its group'
          : f.mode & 0o007
            ? 'readable by others'
            : 'owned by another user';
  return { ok: true, loose: { mode, owner, looseness, why } };
}

/**
 * Creates the state directory (0700) or tightens its mode. A folder it cannot tighten (this
 * process is not its owner, as with a Kubernetes volume) is used as it is when judgeLooseStateDir
 * accepts it: the result says how loose it is, for the caller to warn once. Throws
 * STATE_DIR_NOT_WRITABLE or STATE_DIR_WORLD_WRITABLE otherwise (see judgeLooseStateDir).
 */
export async function ensureStateDir(dir: string): Promise<LooseStateDir | undefined> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await fs.stat(dir);
  const processUid = process.getuid?.() ?? -1;
  if ((st.mode & 0o077) === 0 && st.uid === processUid) return undefined;
  try {
    await fs.chmod(dir, 0o700);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    if (code !== 'EPERM' && code !== 'EROFS') throw err;
    const writable = await fs.access(dir, fsConstants.W_OK | fsConstants.X_OK).then(
      () => true,
      () => false,
    );
    // Another device than the parent's: a mount point (a bind mount within one file system is
    // not seen as one, which only refuses more).
    const real = await fs.realpath(dir);
    const parent = await fs.stat(path.dirname(real));
    const mountPoint = parent.dev !== st.dev || parent.ino === st.ino;
    const verdict = judgeLooseStateDir(dir, {
      mode: st.mode,
      uid: st.uid,
      gid: st.gid,
      processUid,
      processGid: process.getgid?.() ?? -1,
      writable,
      chmodError: code,
      mountPoint,
    });
    if (!verdict.ok) throw verdict.error;
    return verdict.loose;
  }
}

/** The status shard of an agent: two hex digits, uniform whatever the id looks like. */
export function statusShardOf(agentId: string): string {
  return createHash('sha1').update(agentId).digest('hex').slice(0, 2);
}

/** Writes one status shard atomically (the caller syncs the folder once per batch). */
export async function writeStatusShard(
  stateDir: string,
  shard: string,
  agents: Record<string, AgentStatus>,
): Promise<number> {
  const data = JSON.stringify({ version: 1, writtenAt: new Date().toISOString(), agents } satisfies StatusFile) + '\n';
  await writeFileAtomic(path.join(stateDir, STATUS_DIR, `${shard}.json`), data, { syncDir: false });
  return Buffer.byteLength(data);
}

/**
 * Every agent's last status: the legacy status.json first, then the shards (newer) over it.
 * Unreadable files and entries that fail AgentStatusSchema are skipped and listed in `problems`:
 * status is advisory, and the server writes it again.
 */
export async function readAllStatus(
  stateDir: string,
): Promise<{ agents: Record<string, AgentStatus>; legacy: boolean; problems: StateProblem[] }> {
  const agents: Record<string, AgentStatus> = Object.create(null) as Record<string, AgentStatus>;
  const problems: StateProblem[] = [];
  const legacyPath = path.join(stateDir, STATUS_FILE);
  const legacyRaw = await readStatusJson(legacyPath, problems);
  const legacy = legacyRaw !== undefined;
  if (legacyRaw) Object.assign(agents, validStatuses(legacyPath, legacyRaw, problems));
  let names: string[] = [];
  try {
    names = (await fs.readdir(path.join(stateDir, STATUS_DIR))).filter((n) => SHARD_FILE.test(n)).sort();
  } catch {
    // no shards yet
  }
  const files = names.map((n) => path.join(stateDir, STATUS_DIR, n));
  const shards = await Promise.all(files.map((f) => readStatusJson(f, problems)));
  for (const [i, raw] of shards.entries()) {
    if (raw) Object.assign(agents, validStatuses(files[i], raw, problems));
  }
  return { agents, legacy, problems };
}

/** A status file's JSON, or undefined (absent, too big, not JSON: the last two are problems). */
async function readStatusJson(file: string, problems: StateProblem[]): Promise<unknown> {
  try {
    const st = await fs.stat(file);
    if (st.size > MAX_STATUS_FILE_BYTES) {
      problems.push({ file, problem: `${st.size} bytes, more than the ${MAX_STATUS_FILE_BYTES} read` });
      return undefined;
    }
    return await readJson(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      problems.push({
        file,
        problem:
          err instanceof UserError
            ? 'not valid JSON'
            : `unreadable (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      });
    return undefined;
  }
}

/** The entries of a status file that pass the schema; the others become problems. */
function validStatuses(file: string, raw: unknown, problems: StateProblem[]): Record<string, AgentStatus> {
  const out = Object.create(null) as Record<string, AgentStatus>;
  const data = raw as Partial<StatusFile> | null;
  if (
    !data ||
    typeof data !== 'object' ||
    data.version !== 1 ||
    !data.agents ||
    typeof data.agents !== 'object' ||
    Array.isArray(data.agents)
  ) {
    problems.push({ file, problem: 'expected {"version":1,"agents":{...}}' });
    return out;
  }
  for (const [id, value] of Object.entries(data.agents)) {
    if (!AGENT_ID_PATTERN.test(id)) {
      problems.push({ file, problem: `status of ${JSON.stringify(id.slice(0, 40))}: not an agent id` });
      continue;
    }
    const parsed = AgentStatusSchema.safeParse(value);
    if (parsed.success) out[id] = parsed.data as AgentStatus;
    else problems.push({ file, agentId: id, problem: `status of agent ${id}: ${schemaProblem(parsed.error)}` });
  }
  return out;
}

async function readJson(file: string): Promise<unknown | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new UserError('STATE_CORRUPT', `${file}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
}

/**
 * Reads the agents: agents.json (empty when absent) plus the journal (see the header); throws
 * STATE_CORRUPT when agents.json is not a registry file at all. Skipped records are not returned:
 * see {@link readAgents}.
 */
export async function readAgentsFile(stateDir: string): Promise<AgentsFile> {
  const state = await readAgentsState(stateDir);
  requireReadable(stateDir, state);
  return state.file;
}

/** What a reader of the registry gets, whatever state the files are in. */
export interface AgentsRead {
  /** Valid records: agents.json's, then the journal's that agents.json does not hold. */
  agents: AgentRecord[];
  /** agents.json exists (it may still be unreadable). */
  hasFile: boolean;
  /** Why agents.json could not be used (not JSON, not a registry file, not readable). */
  fileProblem?: string;
  /** Records skipped: not JSON, or not passing AgentRecordSchema. */
  invalid: StateProblem[];
}

/** Reads agents.json and the journal without throwing for their content (the server's read). */
export async function readAgents(stateDir: string): Promise<AgentsRead> {
  const state = await readAgentsState(stateDir);
  return {
    agents: state.file.agents,
    hasFile: state.hasFile,
    ...(state.fileProblem !== undefined ? { fileProblem: state.fileProblem } : {}),
    invalid: state.invalid,
  };
}

interface AgentsState {
  file: AgentsFile;
  /** agents.json exists. */
  hasFile: boolean;
  fileProblem?: string;
  invalid: StateProblem[];
  /**
   * Entries of agents.json and JSON journal lines that are not valid records, as read: a full
   * rewrite keeps them (after the valid records) for a person to repair.
   */
  kept: Record<string, unknown>[];
  /** Journal records (also those agents.json already holds). */
  journalRecords: number;
  /** Bytes of the journal up to its last complete line; `journalSize` beyond it is a torn line. */
  journalValid: number;
  journalSize: number;
}

/**
 * Writers refuse a registry they would damage: an agents.json that cannot be read, or one that is
 * missing although the state dir shows it existed (a journal, which only follows agents.json, or
 * status written for agents). Writing then would replace the registry with the journal's agents
 * alone, and a running server (which keeps the agents it knows while the file is missing) would
 * see every other agent disappear.
 */
async function requireWritable(stateDir: string, state: AgentsState): Promise<void> {
  requireReadable(stateDir, state);
  if (state.hasFile) return;
  const statusFiles = await fs.readdir(path.join(stateDir, STATUS_DIR)).then(
    (n) => n.filter((f) => SHARD_FILE.test(f)).length,
    () => 0,
  );
  const legacy = await fs.stat(path.join(stateDir, STATUS_FILE)).then(
    () => true,
    () => false,
  );
  if (state.journalSize > 0 || statusFiles > 0 || legacy) {
    throw new UserError(
      'STATE_AGENTS_FILE_MISSING',
      `${path.join(stateDir, AGENTS_FILE)} is missing, but ${state.journalSize > 0 ? AGENTS_JOURNAL : 'status'} shows this state dir held agents: restore agents.json from a backup (a running server keeps the agents it knows meanwhile). To start a new registry instead, move ${AGENTS_JOURNAL}, ${STATUS_DIR}/ and ${STATUS_FILE} out of the state dir.`,
    );
  }
}

function requireReadable(stateDir: string, state: AgentsState): void {
  if (state.fileProblem !== undefined) {
    throw new UserError(
      'STATE_CORRUPT',
      `${path.join(stateDir, AGENTS_FILE)}: ${state.fileProblem}; restore it from a backup (it is not rewritten while it cannot be read)`,
    );
  }
}

/** agents.json's text, or undefined when absent; unreadable → a problem instead of a throw. */
async function readAgentsText(file: string): Promise<{ text?: string; problem?: string }> {
  try {
    return { text: await fs.readFile(file, 'utf8') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return {};
    return { problem: `cannot be read (${code ?? 'error'})` };
  }
}

/**
 * Splits agents.json into valid records and problems (with lines in the one-per-line layout); returns the ids it
 * holds.
 */
function parseAgentsJson(file: string, text: string, state: AgentsState): Set<string> {
  const ids = new Set<string>();
  let raw: unknown;
  try {
    raw = JSON.parse(text) as unknown;
  } catch (err) {
    state.fileProblem = `not valid JSON (${(err as Error).message.slice(0, 200)})`;
    return ids;
  }
  const data = raw as Partial<AgentsFile> | null;
  if (!data || typeof data !== 'object' || data.version !== 1 || !Array.isArray(data.agents)) {
    state.fileProblem = 'expected {"version":1,"agents":[...]}';
    return ids;
  }
  // formatAgentsFile writes a head line, one agent per line, and a closing line.
  const oneLineEach = text.split('\n').filter((l) => l !== '').length === data.agents.length + 2;
  const valid: AgentRecord[] = [];
  for (const [i, entry] of (data.agents as unknown[]).entries()) {
    const parsed = AgentRecordSchema.safeParse(entry);
    if (parsed.success) {
      valid.push(parsed.data);
      ids.add(parsed.data.id);
      continue;
    }
    const hints = recordHints(entry);
    // A skipped record's id still shadows journal lines: one must never undo its revoke.
    if (hints.agentId) ids.add(hints.agentId);
    state.invalid.push({
      file,
      ...(oneLineEach ? { line: i + 2 } : { entry: i }),
      ...hints,
      problem: schemaProblem(parsed.error),
    });
    if (entry && typeof entry === 'object' && !Array.isArray(entry)) state.kept.push(entry as Record<string, unknown>);
  }
  state.file = { version: 1, agents: valid };
  return ids;
}

async function readAgentsState(stateDir: string): Promise<AgentsState> {
  const file = path.join(stateDir, AGENTS_FILE);
  const journalPath = path.join(stateDir, AGENTS_JOURNAL);
  const [read, journal] = await Promise.all([
    readAgentsText(file),
    fs.readFile(journalPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    }),
  ]);
  const state: AgentsState = {
    file: { version: 1, agents: [] },
    hasFile: read.text !== undefined || read.problem !== undefined,
    invalid: [],
    kept: [],
    journalRecords: 0,
    journalValid: 0,
    journalSize: journal?.length ?? 0,
    ...(read.problem !== undefined ? { fileProblem: read.problem } : {}),
  };
  const ids = read.text !== undefined ? parseAgentsJson(file, read.text, state) : new Set<string>();
  if (!journal?.length) return state;
  const valid = journal.lastIndexOf(0x0a) + 1;
  state.journalValid = valid;
  const added: AgentRecord[] = [];
  const lines = journal.subarray(0, valid).toString('utf8').split('\n');
  for (const [i, line] of lines.entries()) {
    if (!line) continue;
    let raw: unknown;
    try {
      raw = JSON.parse(line) as unknown;
    } catch (err) {
      state.invalid.push({
        file: journalPath,
        line: i + 1,
        problem: `not valid JSON (${(err as Error).message.slice(0, 200)})`,
      });
      continue;
    }
    state.journalRecords++;
    const parsed = AgentRecordSchema.safeParse(raw);
    const hints = parsed.success ? {} : recordHints(raw);
    const id = parsed.success ? parsed.data.id : hints.agentId;
    if (id !== undefined && ids.has(id)) continue;
    if (id !== undefined) ids.add(id);
    if (parsed.success) {
      added.push(parsed.data);
      continue;
    }
    state.invalid.push({ file: journalPath, line: i + 1, ...hints, problem: schemaProblem(parsed.error) });
    if (raw && typeof raw === 'object' && !Array.isArray(raw)) state.kept.push(raw as Record<string, unknown>);
  }
  if (added.length) state.file = { ...state.file, agents: [...state.file.agents, ...added] };
  return state;
}

/**
 * agents.json as JSON with one agent per line: still readable and diff-friendly, and at 10,000
 * agents about a third smaller and quicker to write than indented JSON.
 */
export function formatAgentsFile(file: AgentsFile, kept: readonly Record<string, unknown>[] = []): string {
  const { agents, ...rest } = file;
  const head = JSON.stringify(rest).slice(0, -1);
  const entries: unknown[] = [...agents, ...kept];
  if (entries.length === 0) return `${head},"agents":[]}\n`;
  return `${head},"agents":[\n${entries.map((a) => JSON.stringify(a)).join(',\n')}\n]}\n`;
}

/**
 * Changes agents.json under an exclusive lock so two CLI commands never lose each other's write.
 * `change` returns the new file content and a result. The journal is folded in and deleted.
 */
export async function updateAgentsFile<T>(
  stateDir: string,
  change: (
    file: AgentsFile,
    skipped: readonly Record<string, unknown>[],
  ) => { file: AgentsFile; result: T; skipped?: Record<string, unknown>[] },
): Promise<T> {
  return withAgentsLock(stateDir, async () => {
    const state = await readAgentsState(stateDir);
    await requireWritable(stateDir, state);
    const { file, result, skipped } = change(state.file, state.kept);
    await writeAgentsFile(stateDir, file, skipped ?? state.kept);
    return result;
  });
}

/**
 * Adds agents under the same lock: `check` sees every agent first (and throws to refuse). The
 * records are appended to the journal and fsynced, or, when agents.json does not exist yet or the
 * journal is full, written with a full rewrite of agents.json.
 */
export async function appendAgents(
  stateDir: string,
  records: readonly AgentRecord[],
  check: (file: AgentsFile) => void,
): Promise<void> {
  await withAgentsLock(stateDir, async () => {
    const state = await readAgentsState(stateDir);
    await requireWritable(stateDir, state);
    check(state.file);
    if (!state.hasFile || state.journalRecords + records.length > JOURNAL_MAX) {
      await writeAgentsFile(stateDir, { ...state.file, agents: [...state.file.agents, ...records] }, state.kept);
      return;
    }
    const journal = path.join(stateDir, AGENTS_JOURNAL);
    const handle = await fs.open(journal, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND, 0o600);
    try {
      // A torn line from a crashed append would swallow the first new record.
      if (state.journalSize > state.journalValid) await handle.truncate(state.journalValid);
      await handle.writeFile(records.map((r) => `${JSON.stringify(r)}\n`).join(''), 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    // The journal's own directory entry must survive a crash too.
    if (state.journalSize === 0) await syncDir(stateDir);
  });
}

/** Full write of agents.json, then the journal it now holds is deleted (see the header). */
async function writeAgentsFile(
  stateDir: string,
  file: AgentsFile,
  kept: readonly Record<string, unknown>[],
): Promise<void> {
  await writeFileAtomic(path.join(stateDir, AGENTS_FILE), formatAgentsFile(file, kept));
  await fs.rm(path.join(stateDir, AGENTS_JOURNAL), { force: true });
}

async function withAgentsLock<T>(stateDir: string, body: () => Promise<T>): Promise<T> {
  await ensureStateDir(stateDir);
  const lock = path.join(stateDir, LOCK_FILE);
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      await (await fs.open(lock, 'wx', 0o600)).close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const stat = await fs.stat(lock).catch(() => undefined);
      if (stat && Date.now() - stat.mtimeMs > STALE_LOCK_MS) {
        await fs.rm(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new RetryableError('STATE_LOCKED', `${lock}: another command holds the lock; try again`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await body();
  } finally {
    await fs.rm(lock, { force: true });
  }
}
