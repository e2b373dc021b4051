/**
 * The seams between the server's parts, so Git watching, configuration, the fleet, the registry
 * and the WebSocket hub can be built and tested apart and wired together in serve.ts:
 * GitSource (git/source.ts) → Fleet (fleet/) → DesiredStateProvider and Pusher ↔ Hub (hub.ts).
 */
import type {
  AgentSettings,
  ConfigMessage,
  ErrorMessage,
  ManifestFile,
  ManifestProjectConfig,
  ProblemReport,
} from '../protocol/messages.js';

/** Which commit to follow in a project: GitLab's `ref` (default branch when empty). */
export type GitRef = { branch: string } | { tag: string } | { commit: string } | Record<string, never>;

/** A stable key for a ref, for maps. */
export function refKey(ref: GitRef): string {
  if ('branch' in ref) return `branch:${ref.branch}`;
  if ('tag' in ref) return `tag:${ref.tag}`;
  if ('commit' in ref) return `commit:${ref.commit}`;
  return 'HEAD';
}

/** One agent's config.yaml, resolved with GitLab's defaults. */
export interface AgentConfig {
  settings: AgentSettings;
  projects: ManifestProjectConfig[];
  /** GitLab sections this product accepts but does not act on (reported once at info level). */
  unusedSections: string[];
}

export type AgentConfigResult =
  { ok: true; config: AgentConfig; commit: string } | { ok: false; problems: ProblemReport[]; commit?: string };

/** A new commit seen on a watched project/ref. */
export interface CommitEvent {
  project: string;
  ref: GitRef;
  commit: string;
}

/** A project that could not be read (unreachable host, deleted branch): the last commit stays in force. */
export interface SourceErrorEvent {
  project: string;
  ref: GitRef;
  problem: ProblemReport;
}

/**
 * A watched project/ref that had a problem is readable again (its commit may be unchanged, so no
 * CommitEvent follows): listeners clear the error they showed.
 */
export interface SourceRecoverEvent {
  project: string;
  ref: GitRef;
  /** The commit in force, unchanged or new (a new one is also sent as a CommitEvent). */
  commit: string;
  /** The problem that cleared. */
  cleared: ProblemReport;
}

/**
 * Git access for the server: one check per (project, ref). Sharing a watch among the agents that
 * follow it is the caller's job (fleet/watches.ts): a (project, ref) has at most one watcher.
 */
export interface GitSource {
  /**
   * Follow a project/ref; the listener gets the current commit once known and every later one, a
   * problem once per kind while it lasts, and (when given) `onRecover` once when it clears. A
   * second watch of a (project, ref) that is watched is refused (GIT_ALREADY_WATCHED).
   */
  watch(
    project: string,
    ref: GitRef,
    onCommit: (e: CommitEvent) => void,
    onError: (e: SourceErrorEvent) => void,
    onRecover?: (e: SourceRecoverEvent) => void,
  ): () => void;
  /** Fetch now (webhook): resolves when the fetch finished (and listeners were told of a new commit). */
  refresh(project: string): Promise<void>;
  /** Files at a commit matching GitLab-style globs, dot-directories skipped, size limits enforced. */
  readFiles(project: string, commit: string, globs: string[]): Promise<ManifestFile[]>;
  /**
   * One file at a commit, or undefined when absent. `maxBytes` lowers the per-file limit for this
   * read (config.yaml: 128 KiB), checked from the object header before anything is inflated.
   */
  readFile(project: string, commit: string, path: string, options?: { maxBytes?: number }): Promise<string | undefined>;
  /**
   * The blob id of one regular file at a commit, or undefined when absent: equal ids mean equal
   * content, so a caller can skip re-reading a file a new commit did not touch. Optional.
   */
  fileId?(project: string, commit: string, path: string): Promise<string | undefined>;
  close(): Promise<void>;
}

/** A desired message for one (agent, project), encoded once and shared by every session. */
export interface DesiredEntry {
  project: string;
  commit: string;
  digest: string;
  /** The JSON text of the `desired` message. */
  encoded: string;
}

/** What the hub sends to a session; implemented by the Fleet over Git and config.yaml. */
export interface DesiredStateProvider {
  /** The agent's current `config` message, if its config has been read. */
  configMessage(agentId: string): ConfigMessage | undefined;
  /** Standing problems to tell a newly connected session (config and Git errors). */
  errorMessages(agentId: string): ErrorMessage[];
  /** Current desired state for each of the agent's projects that has one. */
  desired(agentId: string): Promise<DesiredEntry[]>;
  /** Manifest project ids of the agent's current config (empty until it is read): reports for others are refused. */
  projectsOf(agentId: string): readonly string[];
}

/** Where the Fleet's messages go as Git and config change: every ready session of the agent (the hub). */
export interface Pusher {
  pushConfig(agentId: string, message: ConfigMessage): void;
  pushDesired(agentId: string, entry: DesiredEntry): void;
  pushError(agentId: string, message: ErrorMessage): void;
}
