/**
 * Test repositories: creates bare repositories under a Git server's root (or any folder, for the
 * server's local-root mode) and changes them the way users do, with the real `git` CLI through a
 * work clone: commit and push, force-push, tag, create and delete branches.
 *
 * Every git call is an async `execFile`: a synchronous call would block the event loop and
 * deadlock a push to a Git server running in the same process.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { GitServer } from './git-server.js';

const run = promisify(execFile);

/** Run git in `cwd`; the error carries git's stderr. */
export async function git(cwd: string, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('git', args, {
      cwd,
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1', HOME: process.env.HOME ?? tmpdir() },
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout.trim();
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`git ${args[0]} failed in ${cwd}: ${e.stderr?.trim() || e.message}`);
  }
}

export interface CommitOptions {
  /** Path in the repository → new content, or null to delete the file. */
  files: Record<string, string | null>;
  message?: string;
  /** Branch to commit on (created from the current one when new); default: the current branch. */
  branch?: string;
}

export interface TestRepo {
  /** Project id (`group/name`), as the server names it. */
  readonly name: string;
  /** Path of the bare repository. */
  readonly bareDir: string;
  /** Work clone used to make commits. */
  readonly workDir: string;
  /** Clone URL: the HTTP URL when served, else the bare path. */
  readonly url: string;
  /** Write/delete files, commit and push; resolves to the new commit id. */
  commit(options: CommitOptions): Promise<string>;
  /** Move `branch` (default: current) to `rev` and push it with --force; resolves to the commit id. */
  forcePush(rev: string, branch?: string): Promise<string>;
  /** Delete a branch on the server. */
  deleteBranch(branch: string): Promise<void>;
  /** Create a lightweight tag at `rev` (default HEAD) and push it. */
  tag(name: string, rev?: string): Promise<string>;
  /** Current commit of the work clone. */
  head(): Promise<string>;
  /** Remove the work clone (the bare repository stays). */
  dispose(): Promise<void>;
}

/**
 * Create an empty bare repository `<root>/<name>.git` (default branch `main`) with a work clone.
 * With a server, commits are pushed over smart HTTP (with its token when it has one); with
 * `{root}` they are pushed to the folder directly.
 */
export async function createRepo(
  target: GitServer | { root: string },
  name: string,
  options: { defaultBranch?: string } = {},
): Promise<TestRepo> {
  const branch0 = options.defaultBranch ?? 'main';
  const bareDir = path.join(target.root, `${name}.git`);
  await mkdir(path.dirname(bareDir), { recursive: true });
  await git(target.root, 'init', '--quiet', '--bare', `--initial-branch=${branch0}`, bareDir);

  let url = bareDir;
  let pushUrl = bareDir;
  if ('url' in target) {
    url = `${target.url}/${name}.git`;
    // Test-only: the work clone keeps the token in its remote URL; the product never does this.
    pushUrl = target.token ? url.replace('http://', `http://test:${encodeURIComponent(target.token)}@`) : url;
  }

  const workDir = await mkdtemp(path.join(tmpdir(), 'gitops-work-'));
  await git(workDir, 'init', '--quiet', `--initial-branch=${branch0}`);
  await git(workDir, 'config', 'user.name', 'Test Author');
  await git(workDir, 'config', 'user.email', 'author@example.test');
  await git(workDir, 'config', 'commit.gpgsign', 'false');
  await git(workDir, 'remote', 'add', 'origin', pushUrl);

  const current = async (): Promise<string> => git(workDir, 'rev-parse', '--abbrev-ref', 'HEAD');

  return {
    name,
    bareDir,
    workDir,
    url,
    async commit({ files, message, branch }) {
      if (branch && branch !== (await current())) await git(workDir, 'checkout', '--quiet', '-B', branch);
      for (const [file, content] of Object.entries(files)) {
        const full = path.join(workDir, file);
        if (content === null) {
          await rm(full, { force: true });
        } else {
          await mkdir(path.dirname(full), { recursive: true });
          await writeFile(full, content);
        }
      }
      await git(workDir, 'add', '--all');
      await git(
        workDir,
        'commit',
        '--quiet',
        '--allow-empty',
        '-m',
        message ?? `change ${Object.keys(files).join(', ')}`,
      );
      await git(workDir, 'push', '--quiet', 'origin', `HEAD:refs/heads/${await current()}`);
      return git(workDir, 'rev-parse', 'HEAD');
    },
    async forcePush(rev, branch) {
      const b = branch ?? (await current());
      if (b !== (await current())) await git(workDir, 'checkout', '--quiet', b);
      await git(workDir, 'reset', '--quiet', '--hard', rev);
      await git(workDir, 'push', '--quiet', '--force', 'origin', `HEAD:refs/heads/${b}`);
      return git(workDir, 'rev-parse', 'HEAD');
    },
    async deleteBranch(branch) {
      await git(workDir, 'push', '--quiet', 'origin', '--delete', branch);
    },
    async tag(tagName, rev = 'HEAD') {
      await git(workDir, 'tag', '--force', tagName, rev);
      await git(workDir, 'push', '--quiet', '--force', 'origin', `refs/tags/${tagName}`);
      return git(workDir, 'rev-parse', `${tagName}^{commit}`);
    },
    head: () => git(workDir, 'rev-parse', 'HEAD'),
    async dispose() {
      await rm(workDir, { recursive: true, force: true });
    },
  };
}
