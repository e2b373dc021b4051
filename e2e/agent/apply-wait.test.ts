/**
 * `gitops-agent apply --wait` as a user runs it: the built dist/bin script under plain Node,
 * against the shared control plane. The control plane has no node, so a ConfigMap is current at
 * once and a Deployment never becomes available: that is the timed-out case; with a progress
 * deadline of 1 s its controller says ProgressDeadlineExceeded, the degraded case. Pods that
 * really run (healthy Deployments, the kubelet's reasons) are e2e/node's.
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
import { TEST_ENV } from '../harness/kube.js';
import { useNamespace } from '../harness/jest-kube.js';
import { WAIT_EXIT_CODES } from '../../src/agent/health-output.js';
import type { HealthReport } from '../../src/agent/health/types.js';

const run = promisify(execFile);
const bin = path.join(repoRoot(), 'dist', 'bin', 'gitops-agent.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

async function agent(...args: string[]): Promise<Run> {
  const started = performance.now();
  const ms = (): number => Math.round(performance.now() - started);
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], {
      env: { ...process.env, KUBECONFIG: process.env[TEST_ENV.kubeconfig] },
    });
    return { code: 0, stdout, stderr, ms: ms() };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '', ms: ms() };
  }
}

async function manifestDir(objects: object[]): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'gitops-wait-'));
  for (const [i, o] of objects.entries()) await writeFile(path.join(dir, `${i}.yaml`), stringify(o));
  return dir;
}

const configMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings' }, data: { level: 'info' } };
const deployment = {
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web' },
  spec: {
    replicas: 1,
    selector: { matchLabels: { app: 'web' } },
    template: {
      metadata: { labels: { app: 'web' } },
      spec: { containers: [{ name: 'web', image: 'registry.invalid/web:1' }] },
    },
  },
};

/** A Deployment whose controller gives up at once: no node runs its pod. */
const stuck = {
  ...deployment,
  metadata: { name: 'stuck' },
  spec: { ...deployment.spec, progressDeadlineSeconds: 1 },
};

describe('gitops-agent apply --wait', () => {
  const ns = useNamespace('apply-wait');

  it('exits 0 at once for objects that are current once they exist, and diff still says nothing changed', async () => {
    expect(existsSync(bin)).toBe(true); // run `npm run build` first
    const dir = await manifestDir([configMap]);
    try {
      const applied = await agent('apply', '-f', dir, '-n', ns.name, '--inventory', 'wait-cm', '--wait');
      expect(applied.stderr).toBe('');
      expect(applied.stdout).toMatch(
        new RegExp(`^ConfigMap/${ns.name}/settings created\nhealth: healthy after \\d+(\\.\\d+)?m?s\n$`),
      );
      expect(applied.code).toBe(0);
      // A process start, one apply and no waiting worth the name (generous for 2 shared cores).
      expect(applied.ms).toBeLessThan(15_000);

      const json = await agent('apply', '-f', dir, '-n', ns.name, '--inventory', 'wait-cm', '--wait', '-o', 'json');
      expect(json.code).toBe(0);
      const out = JSON.parse(json.stdout) as { changes: Array<{ action: string }>; health: HealthReport };
      expect(out.changes.map((c) => c.action)).toEqual(['unchanged']);
      expect(out.health).toMatchObject({
        result: 'healthy',
        objects: [{ id: `ConfigMap/${ns.name}/settings`, state: 'current' }],
      });

      const diff = await agent('diff', '-f', dir, '-n', ns.name, '--inventory', 'wait-cm');
      expect([diff.code, diff.stdout]).toEqual([0, '']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('exits with the timed-out code naming the Deployment still in progress when --timeout passes', async () => {
    const dir = await manifestDir([configMap, deployment]);
    try {
      const r = await agent('apply', '-f', dir, '-n', ns.name, '--inventory', 'wait-dep', '--wait', '--timeout', '3s');
      expect(r.stderr).toBe('');
      const lines = r.stdout.trim().split('\n');
      expect(lines.slice(0, 2).sort()).toEqual([
        `ConfigMap/${ns.name}/settings created`,
        `Deployment/${ns.name}/web created`,
      ]);
      // Only what is not current is listed, then the result.
      expect(lines.slice(2)).toEqual([
        expect.stringMatching(new RegExp(`^Deployment/${ns.name}/web in_progress: .*0/1`)),
        expect.stringMatching(/^health: timed_out after 3\.\d\ds \(1 of 2 objects not current\)$/),
      ]);
      expect(r.code).toBe(WAIT_EXIT_CODES.timed_out);
      expect(r.ms).toBeGreaterThanOrEqual(3_000);

      // Without --wait the same apply exits 0: the objects were applied.
      const plain = await agent('apply', '-f', dir, '-n', ns.name, '--inventory', 'wait-dep');
      expect(plain.code).toBe(0);

      const refused = await agent('apply', '-f', dir, '-n', ns.name, '--wait', '--dry-run', 'server');
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('--wait with --dry-run=server');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("exits with the degraded code as soon as an object fails, with its controller's reason", async () => {
    const dir = await manifestDir([stuck]);
    try {
      const r = await agent(
        'apply',
        '-f',
        dir,
        '-n',
        ns.name,
        '--inventory',
        'wait-stuck',
        '--wait',
        '--timeout',
        '2m',
      );
      expect(r.stderr).toBe('');
      expect(r.stdout.trim().split('\n')).toEqual([
        `Deployment/${ns.name}/stuck created`,
        expect.stringMatching(new RegExp(`^Deployment/${ns.name}/stuck failed: ProgressDeadlineExceeded: `)),
        expect.stringMatching(/^health: degraded after \S+ \(1 of 1 objects not current\)$/),
      ]);
      expect(r.code).toBe(WAIT_EXIT_CODES.degraded);
      // Degraded is said when the controller says so, not when --timeout ends.
      expect(r.ms).toBeLessThan(60_000);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
