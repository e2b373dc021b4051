/**
 * Reading files at a commit straight from a Git object store (no work tree): the files matching
 * GitLab globs, and single files. As GitLab's kas did: directories whose name starts with a dot
 * are skipped (dotfiles elsewhere are read like any file), a file matched by two globs of one
 * project is an error, and at most 1,000 files, 5 MiB each and 20 MiB in all are read per
 * project. Symlinks and submodules are never followed, and the limits turn an oversized
 * repository into a clear error naming the file instead of an unbounded read: sizes come from
 * object headers (objects.ts), so an oversized file is refused before a byte of it is inflated,
 * and the content of one read is taken from a server-wide byte budget in one piece once its total
 * is known.
 */
import { UserError } from '../../common/errors.js';
import type { ManifestFile } from '../../protocol/messages.js';
import type { ByteBudget } from './byte-budget.js';
import { MAX_PATH_LENGTH, createPathMatcher } from './globs.js';
import { ObjectTooLargeError, commitTree, parseTree, type ObjectReader } from './objects.js';

/** Limits for one readFiles call (one manifest project at one commit); the defaults are GitLab's. */
export interface ReadLimits {
  /** Largest single file (default 5 MiB). */
  maxFileBytes: number;
  /** Largest sum over all matched files (default 20 MiB). */
  maxTotalBytes: number;
  /** Most files matched (default 1,000). */
  maxFiles: number;
}

export const DEFAULT_READ_LIMITS: ReadLimits = {
  maxFileBytes: 5 * 1024 * 1024,
  maxTotalBytes: 20 * 1024 * 1024,
  maxFiles: 1000,
};

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
  return new UserError(
    'GIT_FILE_TOO_LARGE',
    `${file}: ${bytes} bytes at ${at(where)}, over the per-file limit of ${mib(limit)}`,
    {
      data: { file, project: where.project, commit: where.commit, bytes },
    },
  );
}

/**
 * The directory kas listed for a glob, and whether recursively: the glob's leading part without
 * any of `\\*?[]{}` up to its last `/` before one (the whole repository when there is none);
 * recursive when the rest has a `/`, a `[` or a `**`. kas counted every file listed towards its
 * limit of 1,000 files per project, whether the glob matched it or not.
 */
export function gitalyScope(glob: string): { dir: string; recursive: boolean } {
  const trimmed = glob.replace(/^\//, '');
  const m = /^([^\\*?[\]{}]+)\/(.*)$/s.exec(trimmed);
  const rest = m ? m[2] : trimmed;
  return { dir: m ? m[1] : '', recursive: /[[/]/.test(rest) || rest.includes('**') };
}

function inScope(scope: { dir: string; recursive: boolean }, path: string): boolean {
  if (scope.dir && !path.startsWith(`${scope.dir}/`)) return false;
  const below = scope.dir ? path.slice(scope.dir.length + 1) : path;
  return scope.recursive || !below.includes('/');
}

/** GitLab refused a file matched by two globs of one project ("path visited more than once"). */
function overlap(where: ReadAt, file: string, globs: readonly string[], matching: number[]): UserError {
  const [a, b] = matching;
  return new UserError(
    'GIT_GLOBS_OVERLAP',
    `${file}: matched by two globs, paths[${a}] ${JSON.stringify(globs[a])} and paths[${b}] ${JSON.stringify(globs[b])}, at ${at(where)}; narrow one so each file is matched once`,
    {
      data: { file, project: where.project, commit: where.commit, globs: [a, b] },
    },
  );
}

function pathTooLong(where: ReadAt, file: string): UserError {
  return new UserError(
    'GIT_PATH_TOO_LONG',
    `${file.slice(0, 200)}…: a path of ${file.length} characters at ${at(where)}, over the limit of ${MAX_PATH_LENGTH}; rename it or narrow the globs`,
    {
      data: { file: file.slice(0, 200), project: where.project, commit: where.commit },
    },
  );
}

/** Every regular file matching one of `globs` at the commit, sorted by path. */
export async function readMatchingFiles(
  where: ReadAt,
  globs: readonly string[],
  limits: Partial<ReadLimits> = DEFAULT_READ_LIMITS,
  readTree: TreeReader = treeReader(where),
): Promise<ManifestFile[]> {
  const { maxFileBytes, maxTotalBytes, maxFiles } = { ...DEFAULT_READ_LIMITS, ...limits };
  const matcher = createPathMatcher(globs);
  const scopes = globs.map(gitalyScope);
  const found: { path: string; oid: string; size: number }[] = [];
  let total = 0;
  let visited = 0;
  let sinceYield = 0;

  const walk = async (treeOid: string, dir: string): Promise<void> => {
    for (const entry of await readTree(treeOid)) {
      // GitLab skips directories whose name starts with a dot (.git, .gitlab, .github), not dotfiles.
      if (entry.type === 'tree' && entry.path.startsWith('.')) continue;
      const path = dir ? `${dir}/${entry.path}` : entry.path;
      if (path.length > MAX_PATH_LENGTH) throw pathTooLong(where, path);
      if (++sinceYield >= YIELD_EVERY) {
        sinceYield = 0;
        await new Promise((r) => setImmediate(r));
      }
      if (entry.type === 'tree') {
        if (matcher.mayContain(path) || scopes.some((s) => s.recursive && inScope(s, `${path}/x`)))
          await walk(entry.oid, path);
      } else if (entry.type === 'blob' && REGULAR_FILE.has(entry.mode)) {
        // GitLab's 1,000 counts every file kas listed for a glob, matched or not (see gitalyScope).
        visited += scopes.filter((s) => inScope(s, path)).length;
        if (visited > maxFiles) {
          throw new UserError(
            'GIT_TOO_MANY_FILES',
            `${path}: more than ${maxFiles} files under the directories of ${globs.join(', ')} at ${at(where)} (GitLab's limit too, counting every file listed for a glob); narrow the globs or split the project`,
            {
              data: { file: path, project: where.project, commit: where.commit },
            },
          );
        }
        const matching = matcher.matching(path);
        if (matching.length === 0) continue;
        if (matching.length > 1) throw overlap(where, path, globs, matching);
        const header = await where.objects.header(entry.oid);
        if (!header) throw missing(where, path);
        if (header.size > maxFileBytes) throw tooLarge(where, path, header.size, maxFileBytes);
        total += header.size;
        if (total > maxTotalBytes) {
          throw new UserError(
            'GIT_FILES_TOO_LARGE',
            `${path}: the files matching ${globs.join(', ')} at ${at(where)} add up to more than ${mib(maxTotalBytes)}; narrow the globs or split the project`,
            {
              data: { file: path, project: where.project, commit: where.commit },
            },
          );
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
    for (const f of found) files.push({ path: f.path, content: await readBlob(where, f.path, f.oid, maxFileBytes) });
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
export async function findFileId(
  where: ReadAt,
  filePath: string,
  readTree: TreeReader = treeReader(where),
): Promise<string | undefined> {
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
export async function readOneFile(
  where: ReadAt,
  filePath: string,
  limits: ReadLimits = DEFAULT_READ_LIMITS,
  readTree?: TreeReader,
): Promise<string | undefined> {
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
  return new UserError('GIT_OBJECT_MISSING', `${file}: its content is missing from the object store at ${at(where)}`, {
    data: { file, project: where.project, commit: where.commit },
  });
}

async function readBounded(objects: ObjectReader, oid: string, type: 'tree' | 'commit'): Promise<Buffer> {
  try {
    const obj = await objects.read(oid, MAX_TREE_BYTES);
    if (!obj || obj.type !== type)
      throw new UserError('GIT_OBJECT_MISSING', `${type} ${oid} is missing from the object store`, { data: { oid } });
    return obj.content;
  } catch (err) {
    if (err instanceof ObjectTooLargeError) {
      throw new UserError(
        'GIT_TREE_TOO_LARGE',
        `${type} ${oid}: ${err.size} bytes, over the limit of ${mib(MAX_TREE_BYTES)}`,
        { data: { oid, bytes: err.size } },
      );
    }
    throw err;
  }
}

async function treeOf(where: ReadAt): Promise<string> {
  let content: Buffer;
  try {
    content = await readBounded(where.objects, where.commit, 'commit');
  } catch (err) {
    throw new UserError(
      'GIT_COMMIT_NOT_FOUND',
      `${at(where)}: commit not available (it was never fetched by this server)`,
      { cause: err, data: { project: where.project, commit: where.commit } },
    );
  }
  return commitTree(content, where.commit);
}
