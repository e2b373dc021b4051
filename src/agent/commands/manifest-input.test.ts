import { describe, expect, it } from '@jest/globals';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { defaultInventoryName, readManifestFiles } from './manifest-input.js';

describe('readManifestFiles', () => {
  it('reads YAML and JSON files recursively, sorted, and skips dot-directories and other files', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'manifests-'));
    try {
      await mkdir(path.join(dir, 'sub'));
      await mkdir(path.join(dir, '.git'));
      await writeFile(path.join(dir, 'b.yaml'), 'b');
      await writeFile(path.join(dir, 'a.json'), 'a');
      await writeFile(path.join(dir, 'sub', 'c.yml'), 'c');
      await writeFile(path.join(dir, '.git', 'd.yaml'), 'd');
      await writeFile(path.join(dir, 'README.md'), 'no');
      const files = await readManifestFiles([dir]);
      expect(files.map((f) => [path.basename(f.path), f.content])).toEqual([
        ['a.json', 'a'],
        ['b.yaml', 'b'],
        ['c.yml', 'c'],
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('says which path does not exist', async () => {
    await expect(readManifestFiles(['/no/such/dir'])).rejects.toThrow('/no/such/dir: no such file or directory');
  });
});

describe('defaultInventoryName', () => {
  it('is stable for a path, differs between paths, and is a valid name', () => {
    const a = defaultInventoryName(['deploy/My App']);
    expect(a).toBe(defaultInventoryName(['deploy/My App']));
    expect(a).not.toBe(defaultInventoryName(['other/My App']));
    expect(a).toMatch(/^gitops-cli-my-app-[0-9a-f]{8}$/);
  });
});
