/**
 * Reading files at a commit straight from a Git object store (no work tree): the files matching
 * GitLab globs, and single files. Dot entries are skipped, symlinks and submodules are never
 * followed, and per-file and total size limits turn an oversized repository into a clear error
 * naming the file instead of an unbounded read.
 */
import fs from 'node:fs';
import git from 'isomorphic-git';
import { UserError } from '../../common/errors.js';
import type { ManifestFile } from '../../protocol/messages.js';
import { createPathMatcher } from './globs.js';

/** Size limits for one readFiles call. */
export interface ReadLimits {
  /** Largest single file (default 5 MiB). */
  maxFileBytes: number;
  /** Largest sum over all matched files (default 50 MiB). */
  maxTotalBytes: number;
}

export const DEFAULT_READ_LIMITS: ReadLimits = { maxFileBytes: 5 * 1024 * 1024, maxTotalBytes: 50 * 1024 * 1024 };

/** isomorphic-git's object cache (pack indexes), shared by all reads of one source. */
export type GitCache = Record<string, unknown>;

export interface ReadAt {
  gitdir: string;
  cache: GitCache;
  project: string;
  commit: string;
}

const REGULAR_FILE = new Set(['100644', '100755']);

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(bytes % (1024 * 1024) === 0 ? 0 : 1)} MiB`;
}

function at(where: ReadAt): string {
  return `${where.project}@${where.commit.slice(0, 12)}`;
}

/** Every regular file matching one of `globs` at the commit, sorted by path. */
export async function readMatchingFiles(where: ReadAt, globs: readonly string[], limits: ReadLimits = DEFAULT_READ_LIMITS): Promise<ManifestFile[]> {
  const { gitdir, cache, commit } = where;
  const matcher = createPathMatcher(globs);
  const files: ManifestFile[] = [];
  let total = 0;

  const walk = async (treeOid: string, dir: string): Promise<void> => {
    const { tree } = await git.readTree({ fs, gitdir, oid: treeOid, cache });
    for (const entry of tree) {
      if (entry.path.startsWith('.')) continue;
      const path = dir ? `${dir}/${entry.path}` : entry.path;
      if (entry.type === 'tree') {
        if (matcher.mayContain(path)) await walk(entry.oid, path);
      } else if (entry.type === 'blob' && REGULAR_FILE.has(entry.mode) && matcher.matches(path)) {
        const { blob } = await git.readBlob({ fs, gitdir, oid: entry.oid, cache });
        if (blob.length > limits.maxFileBytes) {
          throw new UserError('GIT_FILE_TOO_LARGE', `${path}: ${blob.length} bytes at ${at(where)}, over the per-file limit of ${mib(limits.maxFileBytes)}`, {
            data: { file: path, project: where.project, commit, bytes: blob.length },
          });
        }
        total += blob.length;
        if (total > limits.maxTotalBytes) {
          throw new UserError('GIT_FILES_TOO_LARGE', `${path}: the files matching ${globs.join(', ')} at ${at(where)} add up to more than ${mib(limits.maxTotalBytes)}; narrow the globs or split the project`, {
            data: { file: path, project: where.project, commit },
          });
        }
        files.push({ path, content: Buffer.from(blob).toString('utf8') });
      }
      // Symlinks (120000) and submodules (type commit) are skipped: following them could leave the repository.
    }
  };

  await walk(await treeOf(where), '');
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** One entry of a Git tree, as isomorphic-git returns it. */
export interface TreeEntry {
  path: string;
  oid: string;
  mode: string;
  type: 'blob' | 'tree' | 'commit';
}

/** Reads a tree by id; a GitSource passes a memoised one so shared trees are parsed once. */
export type TreeReader = (treeOid: string) => Promise<readonly TreeEntry[]>;

/** The plain tree reader (no memo). */
export function treeReader(where: Pick<ReadAt, 'gitdir' | 'cache'>): TreeReader {
  return async (oid) => (await git.readTree({ fs, gitdir: where.gitdir, oid, cache: where.cache })).tree as TreeEntry[];
}

/** The blob id of a regular file at the commit, or undefined when absent (or not a regular file). */
export async function findFileId(where: ReadAt, filePath: string, readTree: TreeReader = treeReader(where)): Promise<string | undefined> {
  const parts = filePath.replace(/^\/+/, '').split('/').filter(Boolean);
  if (parts.length === 0) return undefined;
  let treeOid = await treeOf(where);
  for (let i = 0; i < parts.length; i++) {
    const entry = (await readTree(treeOid)).find((e) => e.path === parts[i]);
    if (!entry) return undefined;
    if (i < parts.length - 1) {
      if (entry.type !== 'tree') return undefined;
      treeOid = entry.oid;
      continue;
    }
    return entry.type === 'blob' && REGULAR_FILE.has(entry.mode) ? entry.oid : undefined;
  }
  return undefined;
}

/** One regular file at the commit, or undefined when absent (or not a regular file). */
export async function readOneFile(where: ReadAt, filePath: string, limits: ReadLimits = DEFAULT_READ_LIMITS, readTree?: TreeReader): Promise<string | undefined> {
  const oid = await findFileId(where, filePath, readTree);
  if (oid === undefined) return undefined;
  const { blob } = await git.readBlob({ fs, gitdir: where.gitdir, oid, cache: where.cache });
  if (blob.length > limits.maxFileBytes) {
    throw new UserError('GIT_FILE_TOO_LARGE', `${filePath}: ${blob.length} bytes at ${at(where)}, over the per-file limit of ${mib(limits.maxFileBytes)}`, { data: { file: filePath, project: where.project } });
  }
  return Buffer.from(blob).toString('utf8');
}

async function treeOf(where: ReadAt): Promise<string> {
  try {
    const { commit } = await git.readCommit({ fs, gitdir: where.gitdir, oid: where.commit, cache: where.cache });
    return commit.tree;
  } catch (err) {
    throw new UserError('GIT_COMMIT_NOT_FOUND', `${at(where)}: commit not available (it was never fetched by this server)`, { cause: err, data: { project: where.project, commit: where.commit } });
  }
}
