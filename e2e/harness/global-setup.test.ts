// The harness's transpile cache decides by content, not by modification time: a source that is
// older than its cached output (a `git checkout` of an older commit) must still be transpiled
// again, and an output whose source is gone must not be importable.
import { describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { transpileHarness } from './global-setup.js';

async function tree(): Promise<{ root: string; out: string }> {
  const root = await mkdtemp(join(tmpdir(), 'gitops-harness-cache-'));
  await mkdir(join(root, 'src', 'common'), { recursive: true });
  await mkdir(join(root, 'e2e', 'harness'), { recursive: true });
  await writeFile(join(root, 'src', 'common', 'answer.ts'), 'export const answer: number = 1;\n');
  await writeFile(join(root, 'e2e', 'harness', 'uses.ts'), "export { answer } from '../../src/common/answer.js';\n");
  return { root, out: join(root, 'cache') };
}

describe('transpileHarness', () => {
  it('transpiles again a source whose content changed even when it is older than the cached output', async () => {
    const { root, out } = await tree();
    try {
      expect((await transpileHarness(root, out)).transpiled).toBe(2);
      const src = join(root, 'src', 'common', 'answer.ts');
      await writeFile(src, 'export const answer: number = 2;\n');
      const old = new Date(Date.now() - 86_400_000);
      await utimes(src, old, old); // as after checking out an older commit
      const second = await transpileHarness(root, out);
      expect(second.transpiled).toBe(1);
      expect(second.failures).toEqual([]);
      expect(await readFile(join(out, 'src', 'common', 'answer.js'), 'utf8')).toContain('answer = 2');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('leaves unchanged sources alone and deletes outputs whose source is gone', async () => {
    const { root, out } = await tree();
    try {
      await transpileHarness(root, out);
      await rm(join(root, 'e2e', 'harness', 'uses.ts'));
      const again = await transpileHarness(root, out);
      expect(again.transpiled).toBe(0);
      expect(existsSync(join(out, 'e2e', 'harness', 'uses.js'))).toBe(false);
      expect(existsSync(join(out, 'src', 'common', 'answer.js'))).toBe(true);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('leaves no output for a source swc cannot parse, rather than the previous one', async () => {
    const { root, out } = await tree();
    try {
      await transpileHarness(root, out);
      await writeFile(join(root, 'src', 'common', 'answer.ts'), 'export const answer: = ;\n');
      const broken = await transpileHarness(root, out);
      expect(broken.failures).toHaveLength(1);
      expect(broken.failures[0]).toMatch(/^src\/common\/answer\.ts: /);
      expect(existsSync(join(out, 'src', 'common', 'answer.js'))).toBe(false);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
