/**
 * `gitops-agent apply` and `gitops-agent diff` as a user runs them: the built dist/bin script under
 * plain Node (which catches ESM mistakes jest hides), against the test control plane.
 */
import { describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { repoRoot } from '../harness/controlplane.js';
import { kubeRequest, testKubeConfig, TEST_ENV } from '../harness/kube.js';
import { useNamespace } from '../harness/jest-kube.js';

const run = promisify(execFile);
const bin = path.join(repoRoot(), 'dist', 'bin', 'gitops-agent.js');
const kc = testKubeConfig();

async function agent(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], {
      env: { ...process.env, KUBECONFIG: process.env[TEST_ENV.kubeconfig] },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('gitops-agent apply and diff', () => {
  const ns = useNamespace('cli');

  it('applies a directory, reports unchanged the second time, diffs and prunes', async () => {
    expect(existsSync(bin)).toBe(true); // run `npm run build` first
    const dir = await mkdtemp(path.join(tmpdir(), 'gitops-cli-'));
    try {
      const cm = (name: string, v: string) => ({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name },
        data: { v },
      });
      await writeFile(path.join(dir, 'a.yaml'), stringify(cm('a', '1')));
      await writeFile(
        path.join(dir, 'b.yaml'),
        stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'b' }, stringData: { token: 'very-secret' } }),
      );

      const first = await agent('apply', '-f', dir, '-n', ns.name, '--inventory', 'cli-test');
      expect(first.stderr).toBe('');
      expect(first.stdout.trim().split('\n').sort()).toEqual([
        `ConfigMap/${ns.name}/a created`,
        `Secret/${ns.name}/b created`,
      ]);
      expect(first.code).toBe(0);

      const second = await agent('apply', '-f', dir, '-n', ns.name, '--inventory', 'cli-test');
      expect(second.stdout.trim().split('\n').sort()).toEqual([
        `ConfigMap/${ns.name}/a unchanged`,
        `Secret/${ns.name}/b unchanged`,
      ]);

      expect((await agent('diff', '-f', dir, '-n', ns.name, '--inventory', 'cli-test')).code).toBe(0);
      await writeFile(
        path.join(dir, 'b.yaml'),
        stringify({
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'b' },
          stringData: { token: 'changed-secret' },
        }),
      );
      const diff = await agent('diff', '-f', dir, '-n', ns.name, '--inventory', 'cli-test');
      expect(diff.code).toBe(1);
      expect(diff.stdout).toContain(`Secret/${ns.name}/b`);
      expect(diff.stdout).not.toContain('changed-secret');
      expect(diff.stdout).not.toContain(Buffer.from('changed-secret').toString('base64'));

      await rm(path.join(dir, 'a.yaml'));
      const pruned = await agent('apply', '-f', dir, '-n', ns.name, '--inventory', 'cli-test', '--prune', '-o', 'json');
      expect(pruned.code).toBe(0);
      const set = JSON.parse(pruned.stdout) as { changes: Array<{ id: string; action: string }> };
      expect(set.changes.find((c) => c.id === `ConfigMap/${ns.name}/a`)?.action).toBe('pruned');
      expect((await kubeRequest(kc, 'GET', `/api/v1/namespaces/${ns.name}/configmaps/a`)).status).toBe(404);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('diff without the inventory that applied a directory lists every object apply would skip, and exits 1', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'gitops-cli-'));
    try {
      const cm = (v: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'owned' }, data: { v } });
      await writeFile(path.join(dir, 'a.yaml'), stringify(cm('1')));
      await writeFile(
        path.join(dir, 'b.yaml'),
        stringify({
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'owned' },
          stringData: { token: 'very-secret' },
        }),
      );
      expect((await agent('apply', '-f', dir, '-n', ns.name, '--inventory', 'app-a')).code).toBe(0);
      await writeFile(path.join(dir, 'a.yaml'), stringify(cm('2'))); // Git now differs from live

      // No --inventory: a different (default) inventory, which owns none of these objects.
      const diff = await agent('diff', '-f', dir, '-n', ns.name);
      expect(diff.stderr).toBe('');
      expect(diff.code).toBe(1);
      const ids = [`ConfigMap/${ns.name}/owned`, `Secret/${ns.name}/owned`];
      for (const id of ids) expect(diff.stdout).toContain(`--- ${id} (would be skipped, not converged)`);
      expect(diff.stdout).not.toContain('very-secret');

      // The reasons are the words apply prints when it skips them.
      const apply = await agent('apply', '-f', dir, '-n', ns.name);
      const applied = apply.stdout.trim().split('\n').sort();
      expect(applied.map((l) => l.slice(0, l.indexOf(' ')))).toEqual(ids);
      for (const line of applied) {
        const reason = line.slice(line.indexOf(' skipped: ') + ' skipped: '.length);
        expect(reason).toContain(`owned by inventory ${ns.name}/app-a`);
        expect(diff.stdout).toContain(`\n    ${reason}\n`);
      }
      expect((await kubeRequest(kc, 'GET', `/api/v1/namespaces/${ns.name}/configmaps/owned`)).body).toMatchObject({
        data: { v: '1' },
      });

      // With the inventory that applied it, the same diff shows the change itself.
      const own = await agent('diff', '-f', dir, '-n', ns.name, '--inventory', 'app-a');
      expect(own.code).toBe(1);
      expect(own.stdout).toContain(`--- ConfigMap/${ns.name}/owned (would change)`);
      expect(own.stdout).not.toContain('skipped');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('exits non-zero and names file and line for a bad file', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'gitops-cli-'));
    try {
      await writeFile(path.join(dir, 'bad.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n');
      const res = await agent('apply', '-f', dir, '-n', ns.name);
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(/bad\.yaml:\d+/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('explains itself with --help', async () => {
    const res = await agent('apply', '--help');
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('--prune');
    expect(res.stdout).toContain('Examples:');
  });
});
