import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ByteBudget } from './byte-budget.js';
import { MAX_PATH_LENGTH } from './globs.js';
import { ObjectReader } from './objects.js';
import { gitalyScope, readMatchingFiles, readOneFile, type ReadAt } from './read.js';

const git = (cwd: string, ...args: string[]): string =>
  execFileSync(
    'git',
    ['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'init.defaultBranch=main', ...args],
    { cwd, encoding: 'utf8' },
  ).trim();

const MiB = 1024 * 1024;

describe('readMatchingFiles', () => {
  let dir: string;
  let where: ReadAt;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'read-test-'));
    git(dir, 'init', '-q');
    mkdirSync(path.join(dir, 'apps', 'web'), { recursive: true });
    mkdirSync(path.join(dir, 'big'));
    writeFileSync(path.join(dir, 'apps', 'web', 'a.yaml'), 'a: 1\n');
    writeFileSync(path.join(dir, 'apps', 'b.yaml'), 'b: 2\n');
    writeFileSync(path.join(dir, 'apps', '.env.yaml'), 'e: 3\n');
    mkdirSync(path.join(dir, 'apps', '.hidden'));
    writeFileSync(path.join(dir, 'apps', '.hidden', 'h.yaml'), 'h: 4\n');
    mkdirSync(path.join(dir, 'many'));
    for (let i = 0; i < 12; i++) writeFileSync(path.join(dir, 'many', `${i}.txt`), `${i}\n`);
    writeFileSync(path.join(dir, 'big', 'huge.yaml'), Buffer.alloc(64 * MiB));
    writeFileSync(path.join(dir, 'big', 'two.yaml'), Buffer.alloc(3 * MiB, 'x'));
    writeFileSync(path.join(dir, 'big', 'three.yaml'), Buffer.alloc(3 * MiB, 'y'));
    git(dir, 'add', '.');
    git(dir, 'commit', '-q', '-m', 'first');
    git(dir, 'gc', '-q');
    where = {
      objects: new ObjectReader(path.join(dir, '.git')),
      project: 'g/p',
      commit: git(dir, 'rev-parse', 'HEAD'),
      budget: new ByteBudget(16 * MiB),
    };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads the matching files, sorted, and gives the budget back', async () => {
    const files = await readMatchingFiles(where, ['/apps/**/*.yaml']);
    // As GitLab: a dotfile is read, a file in a dot-directory is not.
    expect(files).toEqual([
      { path: 'apps/.env.yaml', content: 'e: 3\n' },
      { path: 'apps/b.yaml', content: 'b: 2\n' },
      { path: 'apps/web/a.yaml', content: 'a: 1\n' },
    ]);
    expect(where.budget?.inUse).toBe(0);
  });

  it('refuses a file over the per-file limit from its header, naming it', async () => {
    const started = performance.now();
    await expect(readMatchingFiles(where, ['/big/huge.yaml'])).rejects.toMatchObject({
      code: 'GIT_FILE_TOO_LARGE',
      message: expect.stringMatching(
        /^big\/huge\.yaml: 67108864 bytes at g\/p@[0-9a-f]{12}, over the per-file limit of 5 MiB$/,
      ),
    });
    // No 64 MiB inflate happened.
    expect(performance.now() - started).toBeLessThan(300);
    await expect(readOneFile(where, 'big/huge.yaml')).rejects.toMatchObject({ code: 'GIT_FILE_TOO_LARGE' });
    expect(where.budget?.inUse).toBe(0);
  });

  it('refuses a file matched by two globs of the project, naming both (GitLab: "path visited more than once")', async () => {
    await expect(readMatchingFiles(where, ['/apps/*.yaml', '/apps/b.*'])).rejects.toMatchObject({
      code: 'GIT_GLOBS_OVERLAP',
      data: { file: 'apps/b.yaml', globs: [0, 1] },
    });
    expect(where.budget?.inUse).toBe(0);
  });

  it("counts every file listed under a glob's directory towards the limit, as GitLab did", async () => {
    // many/ has 12 .txt files: none matches, all are listed for the glob (its directory is many/).
    await expect(readMatchingFiles(where, ['/many/*.yaml'], { maxFiles: 10 })).rejects.toMatchObject({
      code: 'GIT_TOO_MANY_FILES',
    });
    expect(await readMatchingFiles(where, ['/many/*.yaml'], { maxFiles: 12 })).toEqual([]);
    expect(await readMatchingFiles(where, ['/apps/web/*.yaml'], { maxFiles: 1 })).toHaveLength(1);
  });

  it.each([
    ['/manifests/**/*.yaml', 'manifests', true],
    ['manifests/app/*.yaml', 'manifests/app', false],
    ['*.yaml', '', false],
    ['**/*.{yaml,yml,json}', '', true],
    ['apps/*/deploy.yaml', 'apps', true],
    ['a/b[c]/x.yaml', 'a', true],
  ])('kas listed the directory of %s as %s (recursive: %s)', (glob, dir, recursive) => {
    expect(gitalyScope(glob)).toEqual({ dir, recursive });
  });

  it('refuses files adding up to more than the total before reading them', async () => {
    await expect(
      readMatchingFiles(where, ['/big/t*.yaml'], { maxFileBytes: 5 * MiB, maxTotalBytes: 5 * MiB }),
    ).rejects.toMatchObject({ code: 'GIT_FILES_TOO_LARGE' });
    expect(where.budget?.inUse).toBe(0);
  });

  it('waits for the server-wide budget instead of reading past it', async () => {
    const budget = new ByteBudget(4 * MiB);
    const hold = await budget.acquire(2 * MiB);
    let done = false;
    const read = readMatchingFiles({ ...where, budget }, ['/big/two.yaml']).then((f) => ((done = true), f));
    await new Promise((r) => setTimeout(r, 50));
    expect([done, budget.queued]).toEqual([false, 1]);
    hold();
    expect((await read)[0].content.length).toBe(3 * MiB);
    expect(budget.inUse).toBe(0);
  });

  it('reads a single file and says undefined for absent ones', async () => {
    expect(await readOneFile(where, 'apps/web/a.yaml')).toBe('a: 1\n');
    expect(await readOneFile(where, 'apps/none.yaml')).toBeUndefined();
    expect(await readOneFile(where, 'apps')).toBeUndefined();
  });

  it('refuses a path over the length limit in a walked directory', async () => {
    const deep = mkdtempSync(path.join(tmpdir(), 'read-deep-'));
    try {
      git(deep, 'init', '-q');
      const parts = Array.from(
        { length: Math.ceil(MAX_PATH_LENGTH / 200) + 1 },
        (_, i) => `${String(i).padStart(3, '0')}${'d'.repeat(196)}`,
      );
      // Build the tree with plumbing: the file system may not allow such a path.
      const blob = execFileSync('git', ['hash-object', '-w', '--stdin'], {
        cwd: deep,
        input: 'x: 1\n',
        encoding: 'utf8',
      }).trim();
      let tree = execFileSync('git', ['mktree'], {
        cwd: deep,
        input: `100644 blob ${blob}\tf.yaml\n`,
        encoding: 'utf8',
      }).trim();
      for (const p of parts.reverse())
        tree = execFileSync('git', ['mktree'], {
          cwd: deep,
          input: `040000 tree ${tree}\t${p}\n`,
          encoding: 'utf8',
        }).trim();
      const commit = git(deep, 'commit-tree', tree, '-m', 'deep');
      const at: ReadAt = { objects: new ObjectReader(path.join(deep, '.git')), project: 'g/deep', commit };
      await expect(readMatchingFiles(at, ['**/*.yaml'])).rejects.toMatchObject({ code: 'GIT_PATH_TOO_LONG' });
    } finally {
      rmSync(deep, { recursive: true, force: true });
    }
  });
});
