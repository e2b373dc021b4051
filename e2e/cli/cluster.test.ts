// Runs the built `npm run cluster` program (dist/e2e/cli/cluster.js, which `npm test` builds) with
// plain Node: it must print where its kubeconfig is, that kubeconfig must reach a working cluster,
// and SIGTERM must stop everything and remove the kubeconfig and temporary folder.
import { describe, expect, it } from '@jest/globals';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../harness/wait.js';

const script = new URL('../../dist/e2e/cli/cluster.js', import.meta.url).pathname;

describe('npm run cluster', () => {
  it('writes a working admin kubeconfig once ready and cleans everything up on SIGTERM', async () => {
    expect(existsSync(script)).toBe(true); // built by `npm test` / `npm run build`
    const tmp = await mkdtemp(join(tmpdir(), 'gitops-cluster-cli-'));
    const kubeconfig = join(tmp, 'kc');
    const child = spawn(process.execPath, [script, '--kubeconfig', kubeconfig, '--audit-log', join(tmp, 'audit.log')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    try {
      await waitFor(
        () => stdout.includes('Press Ctrl-C to stop.') || child.exitCode !== null,
        60_000,
        `cluster to be ready (stderr: ${stderr})`,
      );
      expect(stdout).toContain(`kubeconfig: ${kubeconfig}`);
      expect(stdout).toContain(`kubectl --kubeconfig ${kubeconfig} get namespaces`);
      const dir = /logs: +(\S+)\/\*\.log/.exec(stdout)?.[1];
      expect(dir && existsSync(dir)).toBe(true);

      const kc = new KubeConfig();
      kc.loadFromFile(kubeconfig);
      const names = (await kc.makeApiClient(CoreV1Api).listNamespace()).items.map((n) => n.metadata?.name);
      expect(names).toEqual(expect.arrayContaining(['default', 'kube-system']));
      expect(existsSync(join(tmp, 'audit.log'))).toBe(true);

      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(existsSync(kubeconfig)).toBe(false);
      expect(existsSync(dir as string)).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await rm(tmp, { recursive: true, force: true });
    }
  });
});
