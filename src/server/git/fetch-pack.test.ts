import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';
import { fetchPack, indexPack } from './fetch-pack.js';
import { ObjectReader } from './objects.js';

const git = (cwd: string, args: string[], input?: string): Buffer =>
  execFileSync(
    'git',
    ['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'init.defaultBranch=main', ...args],
    { cwd, input, maxBuffer: 64 * 1024 * 1024 },
  );

const MiB = 1024 * 1024;

describe('indexPack', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'index-pack-test-'));
    git(dir, ['init', '-q']);
    writeFileSync(path.join(dir, 'small.yaml'), 'kind: ConfigMap\n');
    writeFileSync(path.join(dir, 'zeros.bin'), Buffer.alloc(24 * MiB)); // over the one-piece inflate size: streamed
    const text = Buffer.from(randomBytes(256 * 1024).toString('hex'));
    writeFileSync(path.join(dir, 'one.txt'), text);
    git(dir, ['add', '.']);
    git(dir, ['commit', '-q', '-m', 'first']);
    text.write('CHANGED', 100);
    writeFileSync(path.join(dir, 'one.txt'), text);
    writeFileSync(path.join(dir, 'two.txt'), text);
    git(dir, ['add', '.']);
    git(dir, ['commit', '-q', '-m', 'second']);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const packOf = (name: string, extra: string[]): string => {
    const base = path.join(dir, name);
    const sha = git(dir, ['pack-objects', '--revs', ...extra, base], 'HEAD\n')
      .toString()
      .trim();
    return `${base}-${sha}`;
  };

  it.each([
    ['OFS_DELTA', ['--delta-base-offset']],
    ['REF_DELTA', []],
  ])('writes the same .idx as git index-pack for a pack with %s entries', async (_kind, extra) => {
    const base = packOf(`p${extra.length}`, extra);
    const stored = new ObjectReader(path.join(dir, '.git'));
    const result = await indexPack(`${base}.pack`, stored, 64 * MiB);
    expect(result.skipped).toBe(0);
    expect(result.count).toBe(Number(git(dir, ['rev-list', '--objects', 'HEAD']).toString().trim().split('\n').length));
    expect(result.idx.equals(readFileSync(`${base}.idx`))).toBe(true);
    expect(result.sha).toBe(path.basename(base).split('-')[1]);
  });

  it('leaves out deltas whose base is over the limit, and indexes the rest', async () => {
    const base = packOf('p-small', ['--delta-base-offset']);
    const result = await indexPack(`${base}.pack`, new ObjectReader(path.join(dir, '.git')), 100 * 1024);
    expect(result.skipped).toBeGreaterThan(0);
    expect(result.skipped).toBeLessThan(result.count);
  });

  it('refuses a pack whose checksum does not match', async () => {
    const base = packOf('p-bad', []);
    const bytes = readFileSync(`${base}.pack`);
    bytes[20] ^= 0xff;
    writeFileSync(`${base}.pack`, bytes);
    await expect(indexPack(`${base}.pack`, new ObjectReader(path.join(dir, '.git')), 64 * MiB)).rejects.toThrow(
      /checksum/,
    );
  });
});

const pktLine = (payload: Buffer | string): Buffer => {
  const body = Buffer.from(payload);
  return Buffer.concat([Buffer.from((body.length + 4).toString(16).padStart(4, '0')), body]);
};

/** A Git host that answers one upload-pack request with `response`, recording the request body. */
function fakeHost(status: number, response: Buffer): HttpClient & { requests: string[] } {
  const requests: string[] = [];
  return {
    requests,
    async request(req: GitHttpRequest): Promise<GitHttpResponse> {
      const chunks: Buffer[] = [];
      for await (const c of req.body ?? []) chunks.push(Buffer.from(c));
      requests.push(Buffer.concat(chunks).toString('latin1'));
      // Delivered in small pieces, as a socket does.
      const pieces = Array.from(
        { length: Math.ceil(response.length / 1000) },
        (_, i) => new Uint8Array(response.subarray(i * 1000, i * 1000 + 1000)),
      );
      async function* body(): AsyncGenerator<Uint8Array> {
        yield* pieces;
      }
      return { url: req.url, method: req.method, statusCode: status, statusMessage: '', headers: {}, body: body() };
    },
  };
}

describe('fetchPack', () => {
  let src: string;
  let pack: Buffer;
  let commit: string;
  beforeAll(() => {
    src = mkdtempSync(path.join(tmpdir(), 'fetch-pack-src-'));
    git(src, ['init', '-q']);
    writeFileSync(path.join(src, 'a.yaml'), 'a: 1\n');
    git(src, ['add', '.']);
    git(src, ['commit', '-q', '-m', 'one']);
    commit = git(src, ['rev-parse', 'HEAD']).toString().trim();
    pack = git(src, ['pack-objects', '--revs', '--stdout'], 'HEAD\n');
  });
  afterAll(() => rmSync(src, { recursive: true, force: true }));

  const response = (extra: Buffer[] = []): Buffer =>
    Buffer.concat([
      pktLine('shallow-info\n'),
      pktLine(`shallow ${commit}\n`),
      Buffer.from('0001'),
      pktLine('packfile\n'),
      pktLine(Buffer.concat([Buffer.from([2]), Buffer.from('Enumerating objects\n')])),
      ...Array.from({ length: Math.ceil(pack.length / 500) }, (_, i) =>
        pktLine(Buffer.concat([Buffer.from([1]), pack.subarray(i * 500, i * 500 + 500)])),
      ),
      ...extra,
      Buffer.from('0000'),
    ]);

  const emptyStore = (): string => {
    const gitdir = mkdtempSync(path.join(tmpdir(), 'fetch-pack-dst-'));
    mkdirSync(path.join(gitdir, 'objects', 'pack'), { recursive: true });
    return gitdir;
  };

  it('stores and indexes the pack, records the shallow commit and sends it as a have next time', async () => {
    const gitdir = emptyStore();
    try {
      const host = fakeHost(200, response());
      const objects = new ObjectReader(gitdir);
      const result = await fetchPack({
        http: host,
        url: 'http://h/p.git',
        gitdir,
        want: commit,
        objects,
        headers: { authorization: 'Basic x' },
      });
      expect(result.skipped).toBe(0);
      expect(await objects.hasCommit(commit)).toBe(true);
      expect(readFileSync(path.join(gitdir, 'shallow'), 'utf8')).toBe(`${commit}\n`);
      expect(
        readdirSync(path.join(gitdir, 'objects', 'pack'))
          .sort()
          .map((f) => f.replace(/[0-9a-f]{40}/, 'SHA')),
      ).toEqual(['pack-SHA.idx', 'pack-SHA.pack']);
      expect(host.requests[0]).toContain(`want ${commit}\n`);
      expect(host.requests[0]).toContain('deepen 1\n');
      const other = 'b'.repeat(40);
      await fetchPack({ http: host, url: 'http://h/p.git', gitdir, want: other, objects }).catch(() => undefined);
      expect(host.requests[1]).toContain(`have ${commit}\n`);
    } finally {
      rmSync(gitdir, { recursive: true, force: true });
    }
  });

  it.each([
    ['a pack over the size limit', 200, () => response(), { maxPackBytes: 100 }, 'GIT_PACK_TOO_LARGE'],
    [
      'an error on band 3',
      200,
      () => response([pktLine(Buffer.concat([Buffer.from([3]), Buffer.from('upload-pack: not our ref')]))]),
      {},
      'GIT_FETCH_FAILED',
    ],
    [
      'an ERR line',
      200,
      () => Buffer.concat([pktLine('ERR not our ref\n'), Buffer.from('0000')]),
      {},
      'GIT_FETCH_FAILED',
    ],
    [
      'no pack at all',
      200,
      () => Buffer.concat([pktLine('shallow-info\n'), Buffer.from('0000')]),
      {},
      'GIT_FETCH_FAILED',
    ],
    ['a truncated response', 200, () => response().subarray(0, 300), {}, 'GIT_FETCH_FAILED'],
    ['HTTP 401', 401, () => Buffer.alloc(0), {}, 'HttpError'],
  ])('refuses %s, leaving no file behind', async (_what, status, body, extra, code) => {
    const gitdir = emptyStore();
    try {
      await expect(
        fetchPack({
          http: fakeHost(status, body()),
          url: 'http://h/p.git',
          gitdir,
          want: commit,
          objects: new ObjectReader(gitdir),
          ...extra,
        }),
      ).rejects.toMatchObject({ code });
      expect(readdirSync(path.join(gitdir, 'objects', 'pack'))).toEqual([]);
    } finally {
      rmSync(gitdir, { recursive: true, force: true });
    }
  });
});
