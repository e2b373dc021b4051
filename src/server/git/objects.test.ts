import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  ObjectReader,
  ObjectTooLargeError,
  applyDelta,
  commitTree,
  findOffset,
  parseEntryHeader,
  parsePackIndex,
  parseTree,
} from './objects.js';

const git = (cwd: string, ...args: string[]): string =>
  execFileSync(
    'git',
    ['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'init.defaultBranch=main', ...args],
    { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  ).trim();

const MiB = 1024 * 1024;

/** A repository with a small manifest, a large compressible file and two similar large files. */
function makeRepo(): { dir: string; blobs: Record<string, string>; commit: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'objects-test-'));
  git(dir, 'init', '-q');
  writeFileSync(path.join(dir, 'small.yaml'), 'kind: ConfigMap\n');
  writeFileSync(path.join(dir, 'zeros.bin'), Buffer.alloc(20 * MiB));
  // Two 1 MiB files that differ in a few bytes: `git repack -f` stores one as a delta of the other.
  const text = Buffer.from(randomBytes(512 * 1024).toString('hex'));
  writeFileSync(path.join(dir, 'one.txt'), text);
  text.write('CHANGED', 1000);
  writeFileSync(path.join(dir, 'two.txt'), text);
  git(dir, 'add', '.');
  git(dir, 'commit', '-q', '-m', 'first');
  const blobs: Record<string, string> = {};
  for (const f of ['small.yaml', 'zeros.bin', 'one.txt', 'two.txt']) blobs[f] = git(dir, 'rev-parse', `HEAD:${f}`);
  return { dir, blobs, commit: git(dir, 'rev-parse', 'HEAD') };
}

describe('ObjectReader', () => {
  let repo: ReturnType<typeof makeRepo>;
  beforeAll(() => {
    repo = makeRepo();
  });
  afterAll(() => rmSync(repo.dir, { recursive: true, force: true }));
  const gitdir = (): string => path.join(repo.dir, '.git');

  const checkAll = async (reader: ObjectReader): Promise<void> => {
    for (const [file, oid] of Object.entries(repo.blobs)) {
      expect([file, await reader.header(oid)]).toEqual([
        file,
        { type: 'blob', size: Number(git(repo.dir, 'cat-file', '-s', oid)) },
      ]);
    }
    const small = await reader.read(repo.blobs['small.yaml'], MiB);
    expect(small?.content.toString()).toBe('kind: ConfigMap\n');
    for (const f of ['one.txt', 'two.txt']) {
      const obj = await reader.read(repo.blobs[f], 2 * MiB);
      expect(
        obj?.content.equals(
          execFileSync('git', ['cat-file', 'blob', repo.blobs[f]], { cwd: repo.dir, maxBuffer: 4 * MiB }),
        ),
      ).toBe(true);
    }
    const started = performance.now();
    await expect(reader.read(repo.blobs['zeros.bin'], 5 * MiB)).rejects.toThrow(ObjectTooLargeError);
    // Refused from the header: no 20 MiB inflate.
    expect(performance.now() - started).toBeLessThan(200);
    const commit = await reader.read(repo.commit, MiB);
    expect(commit?.type).toBe('commit');
    const tree = commitTree(commit!.content, repo.commit);
    expect(tree).toBe(git(repo.dir, 'rev-parse', 'HEAD^{tree}'));
    const entries = parseTree((await reader.read(tree, MiB))!.content, tree);
    expect(entries.map((e) => `${e.mode} ${e.type} ${e.oid}\t${e.path}`).join('\n')).toBe(
      git(repo.dir, 'ls-tree', 'HEAD'),
    );
    expect(await reader.hasCommit(repo.commit)).toBe(true);
    expect(await reader.hasCommit(tree)).toBe(false);
    expect(await reader.header('0'.repeat(40))).toBeUndefined();
    expect(await reader.read('0'.repeat(40), MiB)).toBeUndefined();
  };

  it('reads loose objects and their sizes from the first bytes', async () => {
    expect(git(repo.dir, 'count-objects', '-v')).toMatch(/^count: [1-9]/m);
    await checkAll(new ObjectReader(gitdir()));
  });

  it('reads packed objects after git gc', async () => {
    git(repo.dir, 'gc', '-q');
    expect(git(repo.dir, 'count-objects', '-v')).toMatch(/^count: 0$/m);
    await checkAll(new ObjectReader(gitdir()));
  });

  it('reads OFS_DELTA objects after git repack -adf, sizes from the delta header', async () => {
    git(repo.dir, 'repack', '-adfq');
    const packDir = path.join(gitdir(), 'objects', 'pack');
    const pack = git(
      repo.dir,
      'verify-pack',
      '-v',
      ...readdirSync(packDir)
        .filter((f) => f.endsWith('.idx'))
        .map((f) => path.join(packDir, f)),
    );
    // One of the two similar files is stored as a delta (verify-pack shows a depth and a base).
    expect(pack).toMatch(
      new RegExp(`(${repo.blobs['one.txt']}|${repo.blobs['two.txt']}) blob\\s+\\d+ \\d+ \\d+ 1 [0-9a-f]{40}`),
    );
    await checkAll(new ObjectReader(gitdir()));
  });

  it('reads REF_DELTA objects', async () => {
    git(repo.dir, '-c', 'repack.useDeltaBaseOffset=false', 'repack', '-adfq');
    await checkAll(new ObjectReader(gitdir(), { baseCacheBytes: 0 }));
  });

  it('refuses a delta whose base is over the base limit', async () => {
    git(repo.dir, 'repack', '-adfq');
    const reader = new ObjectReader(gitdir(), { maxBaseBytes: 1024 });
    const results = await Promise.allSettled([
      reader.read(repo.blobs['one.txt'], 2 * MiB),
      reader.read(repo.blobs['two.txt'], 2 * MiB),
    ]);
    expect(results.map((r) => (r.status === 'rejected' ? (r.reason as { code: string }).code : 'ok')).sort()).toEqual([
      'GIT_DELTA_BASE_TOO_LARGE',
      'ok',
    ]);
  });
});

describe('pack format helpers', () => {
  it('finds 64-bit offsets in a v2 index', () => {
    const oid = Buffer.alloc(20, 0xab);
    const idx = Buffer.alloc(8 + 1024 + 20 + 4 + 4 + 8 + 40);
    idx.writeUInt32BE(0xff744f63, 0);
    idx.writeUInt32BE(2, 4);
    for (let i = 0xab; i < 256; i++) idx.writeUInt32BE(1, 8 + i * 4);
    oid.copy(idx, 8 + 1024);
    idx.writeUInt32BE(0x80000000, 8 + 1024 + 20 + 4); // index 0 of the 64-bit table
    idx.writeBigUInt64BE(5n * 2n ** 32n + 7n, 8 + 1024 + 20 + 4 + 4);
    const index = parsePackIndex(idx, '/x/pack-1.pack', 6 * 2 ** 32);
    expect(findOffset(index, oid.toString('hex'))).toBe(5 * 2 ** 32 + 7);
    expect(findOffset(index, 'ac'.repeat(20))).toBeUndefined();
    expect(() => parsePackIndex(Buffer.alloc(100), '/x/p.pack', 0)).toThrow(/not a version 2 pack index/);
  });

  it('decodes entry headers with multi-byte sizes', () => {
    // type 3 (blob), size 0x1234 = 4 low bits 0x4, then 0x123 in 7-bit groups.
    expect(parseEntryHeader(Buffer.from([0x80 | (3 << 4) | 0x4, 0x80 | 0x23, 0x02]))).toEqual({
      type: 3,
      size: 0x4 + (0x23 << 4) + (0x02 << 11),
      used: 3,
    });
  });

  it('applies copy and insert instructions, and refuses copies outside the base', () => {
    const base = Buffer.from('hello world');
    // base size 11, result 11: copy 6 bytes from 0 ("hello "), insert "there"
    const delta = Buffer.from([11, 11, 0x80 | 0x01 | 0x10, 0, 6, 5, ...Buffer.from('there')]);
    expect(applyDelta(delta, base).toString()).toBe('hello there');
    expect(() => applyDelta(Buffer.from([11, 20, 0x80 | 0x01 | 0x10, 8, 20]), base)).toThrow(/outside/);
  });

  it('parses tree modes as isomorphic-git names them', () => {
    const id = Buffer.alloc(20, 1);
    const tree = Buffer.concat([
      Buffer.from('40000 dir\0'),
      id,
      Buffer.from('100664 f\0'),
      id,
      Buffer.from('160000 sub\0'),
      id,
    ]);
    expect(parseTree(tree, 't').map((e) => [e.mode, e.type, e.path])).toEqual([
      ['040000', 'tree', 'dir'],
      ['100644', 'blob', 'f'],
      ['160000', 'commit', 'sub'],
    ]);
    expect(() => parseTree(Buffer.from('100644 f\0abc'), 't')).toThrow(/truncated/);
  });
});
