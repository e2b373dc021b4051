/**
 * Where a project's commits come from, behind one small interface so the watcher does not care:
 * - RemoteBackend: a smart-HTTP Git host (GitLab: project `group/name` is `<base>/group/name.git`),
 *   fetched shallowly (fetch-pack.ts; refs are listed with isomorphic-git) into a bare cache
 *   repository per project;
 * - LocalBackend: bare (or ordinary) repositories under a folder, read in place, no network.
 *
 * Both resolve a GitLab `ref` (branch, tag, commit, or the default branch) to a commit whose
 * objects are then readable from `gitdir(project)`. Failures are GitopsErrors with stable codes
 * (GIT_UNREACHABLE, GIT_AUTH_FAILED, GIT_PROJECT_NOT_FOUND, GIT_REF_NOT_FOUND, ...) and never
 * carry the token or credentials from a URL.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import git, { type HttpClient } from 'isomorphic-git';
import { GitopsError, RetryableError, TransientError, UserError, errorMessage } from '../../common/errors.js';
import { Limiter } from '../../common/map-limit.js';
import type { GitRef } from '../ports.js';
import { fetchPack } from './fetch-pack.js';
import { ObjectReader, tagTarget } from './objects.js';
import { checkProjectId } from '../project-id.js';

/**
 * A Git object store and the bounded reader over it (objects.ts). isomorphic-git's own `cache`
 * is never kept between calls: it holds whole pack files in memory for as long as it lives.
 */
export interface ObjectStore {
  gitdir: string;
  objects: ObjectReader;
}

export interface GitBackend {
  /** The object store holding `commit` (or the project's current store when none does). */
  storeFor(project: string, commit: string): Promise<ObjectStore>;
  /** The commit `ref` points at now, with its objects available in `gitdir(project)`. */
  resolve(project: string, ref: GitRef): Promise<string>;
}

/** `branch main`, `tag v1`, `commit abc…`, `the default branch`: for messages. */
export function describeRef(ref: GitRef): string {
  if ('branch' in ref) return `branch "${ref.branch}"`;
  if ('tag' in ref) return `tag "${ref.tag}"`;
  if ('commit' in ref) return `commit ${ref.commit}`;
  return 'the default branch';
}

/** Project ids are GitLab paths (project-id.ts): nothing a URL or file path could abuse. */
export { checkProjectId };

const MAX_CONCURRENT_FETCHES = 4;

function refNotFound(project: string, ref: GitRef, extra = ''): UserError {
  return new UserError('GIT_REF_NOT_FOUND', `${project}: ${describeRef(ref)} does not exist${extra}`, {
    data: { project },
  });
}

function hasCommit(store: ObjectStore, oid: string): Promise<boolean> {
  return store.objects.hasCommit(oid);
}

// ---- remote: a smart-HTTP host ----

export interface RemoteBackendOptions {
  /** e.g. `https://gitlab.example.com` (no credentials in it). */
  baseUrl: string;
  /** Access token, sent as HTTP basic `oauth2:<token>` as GitLab expects. */
  token?: string;
  /** Folder for the per-project cache repositories (the server's state dir). */
  cacheDir: string;
  http: HttpClient;
  /**
   * Each shallow fetch adds a pack file; past this many the project starts over in a fresh cache
   * repository (one depth-1 fetch), so reads never scan thousands of packs (default 50).
   */
  maxPacks?: number;
  /** How long a replaced cache repository stays readable for reads of older commits (default 60 s). */
  retireAfterMs?: number;
}

export class RemoteBackend implements GitBackend {
  private readonly base: string;
  /** Current store per project, and the one it replaced (kept readable for a while). */
  private readonly stores = new Map<
    string,
    { current: Promise<ObjectStore>; generation: number; previous?: ObjectStore }
  >();
  /** Fetches running at once over all projects: each may hold up to about 100 MiB while indexing. */
  private readonly fetchSlots = new Limiter(MAX_CONCURRENT_FETCHES);

  constructor(private readonly options: RemoteBackendOptions) {
    const url = new URL(options.baseUrl);
    if (url.username || url.password) {
      throw new UserError(
        'GIT_CREDENTIALS_IN_URL',
        'the Git base URL must not contain credentials: put the token in a file and pass it with --git-token-file',
      );
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new UserError('GIT_BAD_BASE_URL', `Git base URL ${url.origin}: only http and https are supported`);
    }
    this.base = options.baseUrl.replace(/\/+$/, '');
  }

  /** `<base>/group/name.git` (GitLab's clone URL for a project path). */
  urlOf(project: string): string {
    checkProjectId(project);
    return `${this.base}/${project.replace(/\.git$/, '')}.git`;
  }

  private store(project: string): Promise<ObjectStore> {
    let entry = this.stores.get(project);
    if (!entry) {
      entry = { current: this.openStore(project, 0), generation: 0 };
      this.stores.set(project, entry);
    }
    return entry.current;
  }

  private openStore(project: string, generation: number): Promise<ObjectStore> {
    const url = this.urlOf(project);
    const name = `${project.replace(/[^A-Za-z0-9_.-]+/g, '_')}-${createHash('sha256').update(url).digest('hex').slice(0, 12)}.${generation}.git`;
    const gitdir = path.join(this.options.cacheDir, name);
    const opened = (async () => {
      if (generation > 0) await rm(gitdir, { recursive: true, force: true });
      await mkdir(gitdir, { recursive: true });
      await git.init({ fs, gitdir, bare: true, defaultBranch: 'main' });
      // isomorphic-git maps fetched refs through the remote's refspec, so the cache needs one.
      await git.setConfig({ fs, gitdir, path: 'remote.origin.url', value: url });
      await git.setConfig({ fs, gitdir, path: 'remote.origin.fetch', value: '+refs/heads/*:refs/remotes/origin/*' });
      return { gitdir, objects: new ObjectReader(gitdir) };
    })();
    opened.catch(() => {
      if (this.stores.get(project)?.current === opened) this.stores.delete(project);
    });
    return opened;
  }

  /** Start the project over in a fresh store when the current one has too many packs. */
  private async compactIfNeeded(project: string): Promise<void> {
    const entry = this.stores.get(project);
    if (!entry) return;
    const old = await entry.current;
    const packs = (await readdir(path.join(old.gitdir, 'objects', 'pack')).catch(() => [] as string[])).filter((f) =>
      f.endsWith('.pack'),
    ).length;
    if (packs < (this.options.maxPacks ?? 50)) return;
    entry.generation += 1;
    entry.previous = old;
    entry.current = this.openStore(project, entry.generation);
    const timer = setTimeout(() => {
      if (entry.previous === old) entry.previous = undefined;
      void rm(old.gitdir, { recursive: true, force: true });
    }, this.options.retireAfterMs ?? 60_000);
    timer.unref();
  }

  async storeFor(project: string, commit: string): Promise<ObjectStore> {
    const current = await this.store(project);
    const previous = this.stores.get(project)?.previous;
    if (previous && !(await hasCommit(current, commit)) && (await hasCommit(previous, commit))) return previous;
    return current;
  }

  private auth() {
    const token = this.options.token;
    return token ? { onAuth: () => ({ username: 'oauth2', password: token }) } : {};
  }

  async resolve(project: string, ref: GitRef): Promise<string> {
    const url = this.urlOf(project);
    const { http } = this.options;
    try {
      if ('commit' in ref) return await this.resolveCommit(project, ref.commit, url, await this.store(project));
      const prefix = 'branch' in ref ? `refs/heads/${ref.branch}` : 'tag' in ref ? `refs/tags/${ref.tag}` : 'HEAD';
      const refs = await git.listServerRefs({
        http,
        url,
        ...this.auth(),
        protocolVersion: 2,
        prefix,
        symrefs: true,
        peelTags: true,
      });
      const found = refs.find((r) => r.ref === prefix);
      if (!found) throw refNotFound(project, ref, prefix === 'HEAD' ? ' (the repository has no commits yet)' : '');
      const commit = found.peeled ?? found.oid;
      let store = await this.store(project);
      if (!(await hasCommit(store, commit))) {
        await this.compactIfNeeded(project);
        store = await this.store(project);
        // Our own depth-1 fetch (fetch-pack.ts): isomorphic-git's holds the pack and inflates every object in memory.
        await this.fetch(url, store, commit);
        if (!(await hasCommit(store, commit))) {
          // The ref moved between the listing and the fetch: take what was fetched next time round.
          throw new TransientError('GIT_REF_MOVED', `${project}: ${describeRef(ref)} moved while fetching; retrying`);
        }
      }
      return commit;
    } catch (err) {
      throw this.classify(project, err);
    }
  }

  private async fetch(url: string, store: ObjectStore, want: string): Promise<void> {
    await this.fetchSlots.run(() =>
      fetchPack({
        http: this.options.http,
        url,
        headers: this.authHeaders(),
        gitdir: store.gitdir,
        want,
        objects: store.objects,
      }),
    );
  }

  private authHeaders(): Record<string, string> {
    const token = this.options.token;
    return token ? { authorization: `Basic ${Buffer.from(`oauth2:${token}`).toString('base64')}` } : {};
  }

  /** A pinned commit: protocol v2 lets a depth-1 fetch want any commit reachable from a ref. */
  private async resolveCommit(project: string, commit: string, url: string, store: ObjectStore): Promise<string> {
    if (await hasCommit(store, commit)) return commit;
    try {
      await this.fetch(url, store, commit);
    } catch (err) {
      // The host refuses a want it does not have ("not our ref"): no such commit on any branch or tag.
      if (!(err instanceof GitopsError && err.code === 'GIT_FETCH_FAILED')) throw err;
    }
    if (await hasCommit(store, commit)) return commit;
    throw refNotFound(project, { commit }, ' on any branch or tag');
  }

  /** Map isomorphic-git and socket errors to our codes; messages carry no URL credentials or token. */
  private classify(project: string, err: unknown): GitopsError {
    if (err instanceof GitopsError) return err;
    const e = err as { code?: string; data?: { statusCode?: number }; message?: string };
    const host = new URL(this.base).host;
    const status = e.data?.statusCode;
    if (e.code === 'HttpError' && (status === 401 || status === 403)) {
      return new UserError(
        'GIT_AUTH_FAILED',
        `${project}: the Git host ${host} refused access (HTTP ${status}); check the token and the project's visibility`,
        { data: { project } },
      );
    }
    if (e.code === 'HttpError' && status === 404) {
      return new UserError('GIT_PROJECT_NOT_FOUND', `${project}: no such project on ${host} (HTTP 404)`, {
        data: { project },
      });
    }
    if (e.code === 'HttpError') {
      return new RetryableError('GIT_HOST_ERROR', `${project}: the Git host ${host} answered HTTP ${status ?? '?'}`, {
        data: { project },
      });
    }
    const sys = e.code ?? '';
    if (
      [
        'ECONNREFUSED',
        'ECONNRESET',
        'ENOTFOUND',
        'EAI_AGAIN',
        'ETIMEDOUT',
        'EHOSTUNREACH',
        'ENETUNREACH',
        'EPIPE',
      ].includes(sys) ||
      /socket hang up/.test(e.message ?? '')
    ) {
      return new TransientError(
        'GIT_UNREACHABLE',
        `${project}: cannot reach the Git host ${host} (${sys || 'connection closed'})`,
        { data: { project } },
      );
    }
    return new RetryableError(
      'GIT_FETCH_FAILED',
      `${project}: fetch from ${host} failed: ${scrub(errorMessage(err), this.options.token)}`,
      { data: { project } },
    );
  }
}

/** Remove credentials from URLs and the token itself from a message we did not write. */
function scrub(message: string, token?: string): string {
  let out = message.replace(/\/\/[^/@\s]+@/g, '//');
  if (token) out = out.split(token).join('[redacted]');
  return out;
}

// ---- local: repositories in a folder ----

export class LocalBackend implements GitBackend {
  private readonly readers = new Map<string, ObjectReader>();

  constructor(private readonly root: string) {}

  async storeFor(project: string): Promise<ObjectStore> {
    const gitdir = await this.gitdir(project);
    let objects = this.readers.get(gitdir);
    if (!objects) {
      objects = new ObjectReader(gitdir);
      this.readers.set(gitdir, objects);
    }
    return { gitdir, objects };
  }

  private async gitdir(project: string): Promise<string> {
    checkProjectId(project);
    const base = path.join(this.root, project.replace(/\.git$/, ''));
    for (const candidate of [`${base}.git`, path.join(base, '.git'), base]) {
      if (await isGitdir(candidate)) return candidate;
    }
    throw new UserError('GIT_PROJECT_NOT_FOUND', `${project}: no repository at ${base}.git or ${base}`, {
      data: { project },
    });
  }

  async resolve(project: string, ref: GitRef): Promise<string> {
    const store = await this.storeFor(project);
    const { gitdir } = store;
    if ('commit' in ref) {
      if (await hasCommit(store, ref.commit)) return ref.commit;
      throw refNotFound(project, ref);
    }
    const name = 'branch' in ref ? `refs/heads/${ref.branch}` : 'tag' in ref ? `refs/tags/${ref.tag}` : 'HEAD';
    let oid: string;
    try {
      oid = await git.resolveRef({ fs, gitdir, ref: name });
    } catch {
      throw refNotFound(project, ref, name === 'HEAD' ? ' (the repository has no commits yet)' : '');
    }
    // Annotated tags point at a tag object: peel it to the commit.
    for (let i = 0; i < 10; i++) {
      const obj = await store.objects.read(oid, 1024 * 1024);
      if (obj?.type === 'commit') return oid;
      if (obj?.type !== 'tag') break;
      oid = tagTarget(obj.content, oid).object;
    }
    throw new UserError('GIT_NOT_A_COMMIT', `${project}: ${describeRef(ref)} does not point at a commit`, {
      data: { project },
    });
  }
}

async function isGitdir(dir: string): Promise<boolean> {
  try {
    const [head, objects] = await Promise.all([stat(path.join(dir, 'HEAD')), stat(path.join(dir, 'objects'))]);
    return head.isFile() && objects.isDirectory();
  } catch {
    return false;
  }
}
