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
 * directory. Files are mode 0600 and the directory 0700, because they describe the fleet.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import path from 'node:path';
import { syncDir, writeFileAtomic } from '../common/atomic-file.js';
import { RetryableError, UserError } from '../common/errors.js';
import type { ProblemReport } from '../protocol/messages.js';

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
}

export interface StatusFile {
  version: 1;
  writtenAt: string;
  agents: Record<string, AgentStatus>;
}

/** Agent names follow GitLab's rule (a DNS label). */
export const AGENT_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Creates the state directory (0700) or tightens its mode. */
export async function ensureStateDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.chmod(dir, 0o700);
}

/** The status shard of an agent: two hex digits, uniform whatever the id looks like. */
export function statusShardOf(agentId: string): string {
  return createHash('sha1').update(agentId).digest('hex').slice(0, 2);
}

/** Writes one status shard atomically (the caller syncs the folder once per batch). */
export async function writeStatusShard(stateDir: string, shard: string, agents: Record<string, AgentStatus>): Promise<number> {
  const data = JSON.stringify({ version: 1, writtenAt: new Date().toISOString(), agents } satisfies StatusFile) + '\n';
  await writeFileAtomic(path.join(stateDir, STATUS_DIR, `${shard}.json`), data, { syncDir: false });
  return Buffer.byteLength(data);
}


/**
 * Every agent's last status: the legacy status.json first, then the shards (newer) over it.
 * Unreadable files are skipped: status is advisory.
 */
export async function readAllStatus(stateDir: string): Promise<{ agents: Record<string, AgentStatus>; legacy: boolean }> {
  const agents: Record<string, AgentStatus> = {};
  const legacy = await readStatusFile(stateDir);
  Object.assign(agents, legacy?.agents ?? {});
  let names: string[] = [];
  try {
    names = (await fs.readdir(path.join(stateDir, STATUS_DIR))).filter((n) => SHARD_FILE.test(n)).sort();
  } catch {
    // no shards yet
  }
  const shards = await Promise.all(names.map((n) => readJson(path.join(stateDir, STATUS_DIR, n)).catch(() => undefined)));
  for (const raw of shards) {
    const shard = raw as Partial<StatusFile> | undefined;
    if (shard?.version === 1 && shard.agents && typeof shard.agents === 'object') Object.assign(agents, shard.agents);
  }
  return { agents, legacy: legacy !== undefined };
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

/** Reads the agents: agents.json (empty when absent) plus the journal (see the header). */
export async function readAgentsFile(stateDir: string): Promise<AgentsFile> {
  return (await readAgentsState(stateDir)).file;
}

interface AgentsState {
  file: AgentsFile;
  /** agents.json exists. */
  hasFile: boolean;
  /** Journal records (also those agents.json already holds). */
  journalRecords: number;
  /** Bytes of the journal up to its last complete line; `journalSize` beyond it is a torn line. */
  journalValid: number;
  journalSize: number;
}

async function readAgentsState(stateDir: string): Promise<AgentsState> {
  const file = path.join(stateDir, AGENTS_FILE);
  const [raw, journal] = await Promise.all([readJson(file), fs.readFile(path.join(stateDir, AGENTS_JOURNAL)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  })]);
  let agents: AgentsFile;
  if (raw === undefined) {
    agents = { version: 1, agents: [] };
  } else {
    const data = raw as Partial<AgentsFile>;
    if (data.version !== 1 || !Array.isArray(data.agents)) throw new UserError('STATE_CORRUPT', `${file}: expected {"version":1,"agents":[...]}`);
    agents = data as AgentsFile;
  }
  const state: AgentsState = { file: agents, hasFile: raw !== undefined, journalRecords: 0, journalValid: 0, journalSize: journal?.length ?? 0 };
  if (!journal?.length) return state;
  const valid = journal.lastIndexOf(0x0a) + 1;
  state.journalValid = valid;
  const ids = new Set(agents.agents.map((a) => a.id));
  const added: AgentRecord[] = [];
  const lines = journal.subarray(0, valid).toString('utf8').split('\n');
  for (const [i, line] of lines.entries()) {
    if (!line) continue;
    let record: AgentRecord;
    try {
      record = JSON.parse(line) as AgentRecord;
    } catch (err) {
      throw new UserError('STATE_CORRUPT', `${path.join(stateDir, AGENTS_JOURNAL)}:${i + 1}: not valid JSON (${(err as Error).message})`, { cause: err });
    }
    if (typeof record?.id !== 'string' || typeof record.name !== 'string' || typeof record.publicKey !== 'string') {
      throw new UserError('STATE_CORRUPT', `${path.join(stateDir, AGENTS_JOURNAL)}:${i + 1}: not an agent record`);
    }
    state.journalRecords++;
    if (ids.has(record.id)) continue;
    ids.add(record.id);
    added.push(record);
  }
  if (added.length) state.file = { ...agents, agents: [...agents.agents, ...added] };
  return state;
}

/** Reads the legacy status.json (undefined when absent or unreadable: status is advisory). */
export async function readStatusFile(stateDir: string): Promise<StatusFile | undefined> {
  try {
    const raw = (await readJson(path.join(stateDir, STATUS_FILE))) as StatusFile | undefined;
    return raw && raw.version === 1 && typeof raw.agents === 'object' ? raw : undefined;
  } catch {
    return undefined;
  }
}

/**
 * agents.json as JSON with one agent per line: still readable and diff-friendly, and at 10,000
 * agents about a third smaller and quicker to write than indented JSON.
 */
export function formatAgentsFile(file: AgentsFile): string {
  const { agents, ...rest } = file;
  const head = JSON.stringify(rest).slice(0, -1);
  if (agents.length === 0) return `${head},"agents":[]}\n`;
  return `${head},"agents":[\n${agents.map((a) => JSON.stringify(a)).join(',\n')}\n]}\n`;
}

/**
 * Changes agents.json under an exclusive lock so two CLI commands never lose each other's write.
 * `change` returns the new file content and a result. The journal is folded in and deleted.
 */
export async function updateAgentsFile<T>(stateDir: string, change: (file: AgentsFile) => { file: AgentsFile; result: T }): Promise<T> {
  return withAgentsLock(stateDir, async () => {
    const { file, result } = change((await readAgentsState(stateDir)).file);
    await writeAgentsFile(stateDir, file);
    return result;
  });
}

/**
 * Adds agents under the same lock: `check` sees every agent first (and throws to refuse). The
 * records are appended to the journal and fsynced, or, when agents.json does not exist yet or the
 * journal is full, written with a full rewrite of agents.json.
 */
export async function appendAgents(stateDir: string, records: readonly AgentRecord[], check: (file: AgentsFile) => void): Promise<void> {
  await withAgentsLock(stateDir, async () => {
    const state = await readAgentsState(stateDir);
    check(state.file);
    if (!state.hasFile || state.journalRecords + records.length > JOURNAL_MAX) {
      await writeAgentsFile(stateDir, { ...state.file, agents: [...state.file.agents, ...records] });
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
async function writeAgentsFile(stateDir: string, file: AgentsFile): Promise<void> {
  await writeFileAtomic(path.join(stateDir, AGENTS_FILE), formatAgentsFile(file));
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
      if (Date.now() > deadline) throw new RetryableError('STATE_LOCKED', `${lock}: another command holds the lock; try again`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await body();
  } finally {
    await fs.rm(lock, { force: true });
  }
}
