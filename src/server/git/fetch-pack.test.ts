import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { indexPack } from './fetch-pack.js';
import { ObjectReader } from './objects.js';

const git = (cwd: string, args: string[], input?: string): Buffer =>
  execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'init.defaultBranch=main', ...args], { cwd, input, maxBuffer: 64 * 1024 * 1024 });

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
    const sha = git(dir, ['pack-objects', '--revs', ...extra, base], 'HEAD\n').toString().trim();
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
    await expect(indexPack(`${base}.pack`, new ObjectReader(path.join(dir, '.git')), 64 * MiB)).rejects.toThrow(/checksum/);
  });
});
