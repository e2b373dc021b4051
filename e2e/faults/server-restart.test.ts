/**
 * Fault: the server goes away and comes back. While it is down the agent keeps enforcing the last
 * desired state (drift reverted, deleted objects recreated); a commit pushed meanwhile is applied
 * once the server is back on the same address, and `agent list` shows the agent connected with
 * that commit. On the reusable stack (e2e/harness/stack.ts): the agent runs as in a pod.
 */
import { describe, expect, it } from '@jest/globals';
import { deploymentReplicas, jsonPatch, kubeRequest, waitFor } from '../harness/kube.js';
import { useStack } from '../harness/jest-stack.js';
import { MANIFEST_PROJECT } from '../harness/stack.js';
import { nginx } from './manifests.js';

const fixture = useStack('fault-server', { pollInterval: '1s' });

const deployPath = (): string => `/apis/apps/v1/namespaces/${fixture.ns.name}/deployments/nginx`;
const settingsPath = (): string => `/api/v1/namespaces/${fixture.ns.name}/configmaps/settings`;
const replicas = (): Promise<number | undefined> => deploymentReplicas(fixture.kc, fixture.ns.name);

describe('the server stopped and started again', () => {
  it('keeps drift reverted while the server is down and applies the commit pushed meanwhile once it is back', async () => {
    const { kc, ns, stack } = fixture;
    const t0 = Date.now();
    const agent = stack.agent!;
    const first = await stack.commit({ 'manifest.yaml': nginx(ns.name, 2) });
    await stack.waitForLog(agent, (r) => r.msg === 'applied' && r.commit === first, 20_000, `applied ${first}`);

    await stack.stopServer();
    // `agent list` reads the state dir, so it still works with the server down: not connected.
    expect((await stack.agentList())[0].status).toMatchObject({ connected: false, sessions: 0 });
    await stack.waitForLog(
      agent,
      (r) => ['connection to server lost', 'disconnected from server', 'cannot reach server'].includes(String(r.msg)),
      10_000,
      'disconnect noticed',
    );

    // Drift and a deletion while the server is down: both undone by the agent alone.
    await jsonPatch(kc, deployPath(), [{ op: 'replace', path: '/spec/replicas', value: 6 }], 'manual-edit');
    await waitFor(async () => (await replicas()) === 2, 3000, 'replicas back to 2 with the server down', 20);
    expect((await kubeRequest(kc, 'DELETE', settingsPath())).status).toBe(200);
    await waitFor(
      async () => (await kubeRequest(kc, 'GET', settingsPath())).status === 200,
      3000,
      'settings recreated with the server down',
      20,
    );

    // A commit while the server is down: nobody can tell the agent, so the old state stays.
    const second = await stack.commit({ 'manifest.yaml': nginx(ns.name, 3, 'two') });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await replicas()).toBe(2);

    const restarted = Date.now();
    await stack.startServer();
    await stack.waitForLog(
      agent,
      (r) => r.msg === 'applied' && r.commit === second,
      20_000,
      `applied ${second} after the restart`,
    );
    const catchUpMs = Date.now() - restarted;
    expect((await stack.logs(agent)).filter((r) => r.msg === 'connected to server')).toHaveLength(2);

    // Converged, and the server knows it.
    expect(await replicas()).toBe(3);
    expect(((await kubeRequest(kc, 'GET', settingsPath())).body as { data: { value: string } }).data.value).toBe('two');
    const row = await waitFor(
      async () => {
        const r = (await stack.agentList())[0];
        return r?.status?.connected && r.status.applied[MANIFEST_PROJECT]?.commit === second ? r : undefined;
      },
      10_000,
      'agent list: connected with the new commit applied',
    );
    expect(row.status?.applied[MANIFEST_PROJECT]).toMatchObject({ commit: second, result: 'applied' });

    // Drift is still reverted after the reconnect.
    await jsonPatch(kc, deployPath(), [{ op: 'replace', path: '/spec/replicas', value: 7 }], 'manual-edit');
    await waitFor(async () => (await replicas()) === 3, 3000, 'replicas back to 3 after the reconnect', 20);
    console.log(
      `server restart: caught up ${catchUpMs} ms after the server started again; whole test ${Date.now() - t0} ms`,
    );
  }, 60_000);
});
