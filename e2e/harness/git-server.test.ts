/**
 * Proves the Git harness: commits pushed with the real git CLI through the CGI server can be
 * cloned, fetched shallowly and read at a commit with isomorphic-git, as the server will.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import git from 'isomorphic-git';
import http from 'isomorphic-git/http/node';
import { createRepo, git as gitCli, type TestRepo } from './git-repo.js';
import { startGitServer, type GitServer } from './git-server.js';

let root: string;
let scratch: string;
let server: GitServer;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'gitops-git-root-'));
  scratch = await mkdtemp(path.join(tmpdir(), 'gitops-git-clone-'));
  server = await startGitServer({ root });
});

afterAll(async () => {
  await server.stop();
  await rm(root, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

async function readAt(gitdir: string, oid: string, filepath: string): Promise<string> {
  const { blob } = await git.readBlob({ fs, gitdir, oid, filepath });
  return Buffer.from(blob).toString('utf8');
}

describe('the Git server harness', () => {
  let repo: TestRepo;
  afterAll(async () => repo?.dispose());

  it('serves a pushed commit that isomorphic-git clones shallowly and reads without a work tree', async () => {
    repo = await createRepo(server, 'group/app');
    const first = await repo.commit({ files: { 'manifest.yaml': 'replicas: 2\n' }, message: 'first' });
    const dir = path.join(scratch, 'clone');
    await git.clone({ fs, http, dir, url: repo.url, noCheckout: true, singleBranch: true, depth: 1 });
    const head = await git.resolveRef({ fs, dir, ref: 'HEAD' });
    expect(head).toBe(first);
    expect(await readAt(path.join(dir, '.git'), first, 'manifest.yaml')).toBe('replicas: 2\n');
  });

  it('serves the next commit to a depth-1 fetch, and a deleted file is gone at that commit', async () => {
    const second = await repo.commit({
      files: { 'manifest.yaml': 'replicas: 3\n', 'extra.yaml': 'a: 1\n' },
      message: 'second',
    });
    const third = await repo.commit({ files: { 'extra.yaml': null }, message: 'third' });
    const dir = path.join(scratch, 'clone');
    const result = await git.fetch({ fs, http, dir, url: repo.url, ref: 'main', singleBranch: true, depth: 1 });
    expect(result.fetchHead).toBe(third);
    const gitdir = path.join(dir, '.git');
    expect(await readAt(gitdir, third, 'manifest.yaml')).toBe('replicas: 3\n');
    await expect(readAt(gitdir, third, 'extra.yaml')).rejects.toThrow();
    expect(second).not.toBe(third);
  });

  it('advertises force-pushed and deleted branches as the git CLI made them', async () => {
    const base = await repo.head();
    await repo.commit({ files: { 'b.yaml': 'x\n' }, branch: 'feature' });
    let refs = await git.listServerRefs({ http, url: repo.url, prefix: 'refs/heads/' });
    expect(refs.map((r) => r.ref).sort()).toEqual(['refs/heads/feature', 'refs/heads/main']);
    await repo.forcePush(base, 'feature');
    refs = await git.listServerRefs({ http, url: repo.url, prefix: 'refs/heads/feature' });
    expect(refs[0].oid).toBe(base);
    await repo.deleteBranch('feature');
    refs = await git.listServerRefs({ http, url: repo.url, prefix: 'refs/heads/' });
    expect(refs.map((r) => r.ref)).toEqual(['refs/heads/main']);
  });

  it('lets the git CLI clone over HTTP too', async () => {
    const dir = path.join(scratch, 'cli-clone');
    await gitCli(scratch, 'clone', '--quiet', '--depth', '1', repo.url, dir);
    expect(await gitCli(dir, 'rev-parse', 'HEAD')).toBe(await repo.head());
  });

  it('answers 401 without the token and serves with it as a basic password or a bearer token', async () => {
    const privateRoot = await mkdtemp(path.join(tmpdir(), 'gitops-git-private-'));
    const secured = await startGitServer({ root: privateRoot, token: 'sekrit-token' });
    try {
      const priv = await createRepo(secured, 'private');
      const sha = await priv.commit({ files: { 'a.yaml': 'a: 1\n' } });
      await expect(git.listServerRefs({ http, url: priv.url })).rejects.toThrow(/401/);
      const basic = await git.listServerRefs({
        http,
        url: priv.url,
        onAuth: () => ({ username: 'oauth2', password: 'sekrit-token' }),
      });
      expect(basic.find((r) => r.ref === 'refs/heads/main')?.oid).toBe(sha);
      const bearer = await git.listServerRefs({
        http,
        url: priv.url,
        headers: { authorization: 'Bearer sekrit-token' },
      });
      expect(bearer.length).toBeGreaterThan(0);
      await priv.dispose();
    } finally {
      await secured.stop();
      await rm(privateRoot, { recursive: true, force: true });
    }
  });

  it('refuses connections while stopped and serves again after start', async () => {
    await server.stop();
    await expect(git.listServerRefs({ http, url: repo.url })).rejects.toThrow(/ECONNREFUSED|ECONNRESET|socket hang up/);
    await server.start();
    const refs = await git.listServerRefs({ http, url: repo.url, prefix: 'refs/heads/main' });
    expect(refs[0].oid).toBe(await repo.head());
  });
});
