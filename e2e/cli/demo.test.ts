/**
 * `npm run demo` as a user runs it: the built dist/e2e/cli/demo.js with its own control plane,
 * real node, Git server, server and agent. It must pass every step, say what happened at each
 * (the pods as kubectl shows them, Running and Ready), and exit 0 with nothing left behind.
 * Needs what the node needs (root, Debian's containerd runc containernetworking-plugins
 * busybox-static nginx-light); without them the demo fails with that list, and so does this test.
 */
import { describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';

const DEMO = new URL('../../dist/e2e/cli/demo.js', import.meta.url).pathname;

function runDemo(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // SIGTERM on timeout: the demo stops what it started before exiting.
    execFile(
      process.execPath,
      [DEMO],
      { timeout: 160_000, killSignal: 'SIGTERM', maxBuffer: 8 * 1024 * 1024 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
      },
    );
  });
}

describe('npm run demo', () => {
  it('runs the seed scenario, reports each step with its commit and timing, and exits 0 leaving nothing behind', async () => {
    const { code, stdout, stderr } = await runDemo();
    expect({ code, stderr: stderr.slice(-2000) }).toEqual({ code: 0, stderr: '' });
    const shas = [...stdout.matchAll(/commit {3}([0-9a-f]{12}) pushed/g)].map((m) => m[1]);
    expect(shas).toHaveLength(3);
    expect(stdout).toContain(`server   detected commit ${shas[0]} in gitops-project`);
    expect(stdout).toContain(`agent    applied ${shas[0]}: Deployment/default/nginx created`);
    expect(stdout).toContain(`agent    applied ${shas[1]}: Deployment/default/nginx configured`);
    expect(stdout).toContain('live     Deployment/default/nginx has 3 replicas');
    expect(stdout).toContain('drift reverted on Deployment/default/nginx (changed by kubectl-by-hand)');
    expect(stdout).toContain(`agent    applied ${shas[2]}: Deployment/default/nginx pruned`);
    const revert = /took {5}(\d+) ms from the edit back to 3/.exec(stdout);
    expect(Number(revert?.[1])).toBeLessThan(1000);
    // Each step's pods, as kubectl prints them: 2, 3, the same 3 after the hand scale-up, 3 new ones, none.
    const tables = stdout
      .split('pods     kubectl get pods -l app=nginx\n')
      .slice(1)
      .map((t) => t.split('\n    took')[0]);
    const running = tables.map((t) => [...t.matchAll(/(nginx-\S+)\s+1\/1\s+Running\s/g)].map((m) => m[1]));
    expect(running.map((names) => names.length)).toEqual([2, 3, 3, 3, 0]);
    expect(running[2]).toEqual(running[1]);
    expect(running[3].filter((n) => running[1].includes(n))).toEqual([]);
    expect(tables[4]).toContain('No resources found.');
    expect(tables[0]).toMatch(/NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE/);
    const podsReady = [...stdout.matchAll(/ms from commit to live, (\d+) ms from commit to the pods above/g)].map((m) =>
      Number(m[1]),
    );
    expect(podsReady).toHaveLength(3);
    expect(stdout).toContain('All steps passed.');
    const dirs = [...stdout.matchAll(/(\/tmp\/gitops-(?:stack|cp|node)-[A-Za-z0-9]+)/g)].map((m) => m[1]);
    expect(dirs.length).toBeGreaterThan(0);
    expect(dirs.filter((d) => existsSync(d))).toEqual([]);
  }, 180_000);
});
