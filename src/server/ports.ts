/**
 * The seams between the server's parts, so Git watching, configuration, the registry and the
 * WebSocket hub can be built and tested apart and wired together in serve.ts.
 */
import type { AgentSettings, ManifestFile, ManifestProjectConfig, ProblemReport } from '../protocol/messages.js';

/** Which commit to follow in a project: GitLab's `ref` (default branch when empty). */
export type GitRef = { branch: string } | { tag: string } | { commit: string } | Record<string, never>;

/** One agent's config.yaml, resolved with GitLab's defaults. */
export interface AgentConfig {
  settings: AgentSettings;
  projects: ManifestProjectConfig[];
  /** GitLab sections this product accepts but does not act on (reported once at info level). */
  unusedSections: string[];
}

export type AgentConfigResult =
  | { ok: true; config: AgentConfig; commit: string }
  | { ok: false; problems: ProblemReport[]; commit?: string };

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
 * Git access for the server: one fetch per (project, ref) however many agents follow it.
 */
export interface GitSource {
  /**
   * Follow a project/ref; the listener gets the current commit once known and every later one, a
   * problem once per kind while it lasts, and (when given) `onRecover` once when it clears.
   */
  watch(project: string, ref: GitRef, onCommit: (e: CommitEvent) => void, onError: (e: SourceErrorEvent) => void, onRecover?: (e: SourceRecoverEvent) => void): () => void;
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
