/**
 * Reading files at a commit straight from a Git object store (no work tree): the files matching
 * GitLab globs, and single files. Dot entries are skipped, symlinks and submodules are never
 * followed, and per-file and total size limits turn an oversized repository into a clear error
 * naming the file instead of an unbounded read: sizes come from object headers (objects.ts), so
 * an oversized file is refused before a byte of it is inflated, and the content of one read is
 * taken from a server-wide byte budget in one piece once its total is known.
 */
import { UserError } from '../../common/errors.js';
import type { ManifestFile } from '../../protocol/messages.js';
import type { ByteBudget } from './byte-budget.js';
import { MAX_PATH_LENGTH, createPathMatcher } from './globs.js';
import { ObjectTooLargeError, commitTree, parseTree, type ObjectReader } from './objects.js';

/** Size limits for one readFiles call. */
export interface ReadLimits {
  /** Largest single file (default 5 MiB). */
  maxFileBytes: number;
  /** Largest sum over all matched files (default 50 MiB). */
  maxTotalBytes: number;
}

export const DEFAULT_READ_LIMITS: ReadLimits = { maxFileBytes: 5 * 1024 * 1024, maxTotalBytes: 50 * 1024 * 1024 };

/** Largest commit or tree object read (a tree of 100,000 entries is about 4 MiB). */
export const MAX_TREE_BYTES = 16 * 1024 * 1024;

export interface ReadAt {
  objects: ObjectReader;
  project: string;
  commit: string;
  /** Server-wide bound on file content being read at once (none in tests). */
  budget?: ByteBudget;
}

const REGULAR_FILE = new Set(['100644', '100755']);
/** Entries matched between two turns of the event loop, so no walk holds it for long. */
const YIELD_EVERY = 1000;

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(bytes % (1024 * 1024) === 0 ? 0 : 1)} MiB`;
}

function at(where: ReadAt): string {
  return `${where.project}@${where.commit.slice(0, 12)}`;
}

function tooLarge(where: ReadAt, file: string, bytes: number, limit: number): UserError {
  return new UserError('GIT_FILE_TOO_LARGE', `${file}: ${bytes} bytes at ${at(where)}, over the per-file limit of ${mib(limit)}`, {
    data: { file, project: where.project, commit: where.commit, bytes },
  });
}

function pathTooLong(where: ReadAt, file: string): UserError {
  return new UserError('GIT_PATH_TOO_LONG', `${file.slice(0, 200)}…: a path of ${file.length} characters at ${at(where)}, over the limit of ${MAX_PATH_LENGTH}; rename it or narrow the globs`, {
    data: { file: file.slice(0, 200), project: where.project, commit: where.commit },
  });
}

/** Every regular file matching one of `globs` at the commit, sorted by path. */
export async function readMatchingFiles(where: ReadAt, globs: readonly string[], limits: ReadLimits = DEFAULT_READ_LIMITS, readTree: TreeReader = treeReader(where)): Promise<ManifestFile[]> {
  const matcher = createPathMatcher(globs);
  const found: { path: string; oid: string; size: number }[] = [];
  let total = 0;
  let sinceYield = 0;

  const walk = async (treeOid: string, dir: string): Promise<void> => {
    for (const entry of await readTree(treeOid)) {
      if (entry.path.startsWith('.')) continue;
      const path = dir ? `${dir}/${entry.path}` : entry.path;
      if (path.length > MAX_PATH_LENGTH) throw pathTooLong(where, path);
      if (++sinceYield >= YIELD_EVERY) {
        sinceYield = 0;
        await new Promise((r) => setImmediate(r));
      }
      if (entry.type === 'tree') {
        if (matcher.mayContain(path)) await walk(entry.oid, path);
      } else if (entry.type === 'blob' && REGULAR_FILE.has(entry.mode) && matcher.matches(path)) {
        const header = await where.objects.header(entry.oid);
        if (!header) throw missing(where, path);
        if (header.size > limits.maxFileBytes) throw tooLarge(where, path, header.size, limits.maxFileBytes);
        total += header.size;
        if (total > limits.maxTotalBytes) {
          throw new UserError('GIT_FILES_TOO_LARGE', `${path}: the files matching ${globs.join(', ')} at ${at(where)} add up to more than ${mib(limits.maxTotalBytes)}; narrow the globs or split the project`, {
            data: { file: path, project: where.project, commit: where.commit },
          });
        }
        found.push({ path, oid: entry.oid, size: header.size });
      }
      // Symlinks (120000) and submodules (type commit) are skipped: following them could leave the repository.
    }
  };

  await walk(await treeOf(where), '');
  const release = await where.budget?.acquire(total);
  try {
    const files: ManifestFile[] = [];
    for (const f of found) files.push({ path: f.path, content: await readBlob(where, f.path, f.oid, limits.maxFileBytes) });
    return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  } finally {
    release?.();
  }
}

/** One entry of a Git tree. */
export interface TreeEntry {
  path: string;
  oid: string;
  mode: string;
  type: 'blob' | 'tree' | 'commit';
}

/** Reads a tree by id; a GitSource passes a memoised one so shared trees are parsed once. */
export type TreeReader = (treeOid: string) => Promise<readonly TreeEntry[]>;

/** The plain tree reader (no memo). */
export function treeReader(where: Pick<ReadAt, 'objects'>): TreeReader {
  return async (oid) => {
    const tree = await readBounded(where.objects, oid, 'tree');
    return parseTree(tree, oid);
  };
}

/** The blob id of a regular file at the commit, or undefined when absent (or not a regular file). */
export async function findFileId(where: ReadAt, filePath: string, readTree: TreeReader = treeReader(where)): Promise<string | undefined> {
  const parts = filePath.replace(/^\/+/, '').split('/').filter(Boolean);
  if (parts.length === 0 || filePath.length > MAX_PATH_LENGTH) return undefined;
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
  const header = await where.objects.header(oid);
  if (!header) throw missing(where, filePath);
  if (header.size > limits.maxFileBytes) throw tooLarge(where, filePath, header.size, limits.maxFileBytes);
  const release = await where.budget?.acquire(header.size);
  try {
    return await readBlob(where, filePath, oid, limits.maxFileBytes);
  } finally {
    release?.();
  }
}

async function readBlob(where: ReadAt, file: string, oid: string, maxBytes: number): Promise<string> {
  try {
    const obj = await where.objects.read(oid, maxBytes);
    if (!obj || obj.type !== 'blob') throw missing(where, file);
    return obj.content.toString('utf8');
  } catch (err) {
    if (err instanceof ObjectTooLargeError) throw tooLarge(where, file, err.size, maxBytes);
    throw err;
  }
}

function missing(where: ReadAt, file: string): UserError {
  return new UserError('GIT_OBJECT_MISSING', `${file}: its content is missing from the object store at ${at(where)}`, { data: { file, project: where.project, commit: where.commit } });
}

async function readBounded(objects: ObjectReader, oid: string, type: 'tree' | 'commit'): Promise<Buffer> {
  try {
    const obj = await objects.read(oid, MAX_TREE_BYTES);
    if (!obj || obj.type !== type) throw new UserError('GIT_OBJECT_MISSING', `${type} ${oid} is missing from the object store`, { data: { oid } });
    return obj.content;
  } catch (err) {
    if (err instanceof ObjectTooLargeError) {
      throw new UserError('GIT_TREE_TOO_LARGE', `${type} ${oid}: ${err.size} bytes, over the limit of ${mib(MAX_TREE_BYTES)}`, { data: { oid, bytes: err.size } });
    }
    throw err;
  }
}

async function treeOf(where: ReadAt): Promise<string> {
  let content: Buffer;
  try {
    content = await readBounded(where.objects, where.commit, 'commit');
  } catch (err) {
    throw new UserError('GIT_COMMIT_NOT_FOUND', `${at(where)}: commit not available (it was never fetched by this server)`, { cause: err, data: { project: where.project, commit: where.commit } });
  }
  return commitTree(content, where.commit);
}
