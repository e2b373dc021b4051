/**
 * Fault: the server goes away and comes back. While it is down the agent keeps enforcing the last
 * desired state (drift reverted, deleted objects recreated); a commit pushed meanwhile is applied
 * once the server is back on the same address, and `agent list` shows the agent connected with
 * that commit.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { KubeConfig } from '@kubernetes/client-node';
import { freshNamespace, jsonPatch, kubeRequest, testKubeConfig, TEST_ENV, waitFor, type TestNamespace } from '../harness/kube.js';
import { FaultStack, logs, waitForLog, type AgentProc } from './fixture.js';
import { nginx } from './manifests.js';

let stack: FaultStack;
let kc: KubeConfig;
let ns: TestNamespace;
let agent: AgentProc;

const deployPath = (): string => `/apis/apps/v1/namespaces/${ns.name}/deployments/nginx`;
const settingsPath = (): string => `/api/v1/namespaces/${ns.name}/configmaps/settings`;

async function replicas(): Promise<number | undefined> {
  const res = await kubeRequest(kc, 'GET', deployPath());
  return res.status === 200 ? (res.body as { spec: { replicas: number } }).spec.replicas : undefined;
}

beforeAll(async () => {
  kc = testKubeConfig();
  ns = await freshNamespace('fault-server', kc);
  stack = await FaultStack.create('gitops-fault-server-', { 'fault-server': '' });
  await stack.startServer();
  agent = stack.startAgent('fault-server', { kubeconfig: process.env[TEST_ENV.kubeconfig]!, leaseNamespace: ns.name });
  await waitForLog(agent.proc, (r) => r.msg === 'connected to server', 15_000, 'connected');
}, 60_000);

afterAll(async () => {
  await stack?.dispose();
  await ns?.delete();
}, 60_000);

describe('the server stopped and started again', () => {
  it('keeps drift reverted while the server is down and applies the commit pushed meanwhile once it is back', async () => {
    const t0 = Date.now();
    const first = await stack.repos['fault-server'].commit({ files: { 'manifest.yaml': nginx(ns.name, 2) } });
    await waitForLog(agent.proc, (r) => r.msg === 'applied' && r.commit === first, 20_000, `applied ${first}`);

    await stack.stopServer();
    await waitForLog(agent.proc, (r) => ['connection to server lost', 'disconnected from server', 'cannot reach server'].includes(String(r.msg)), 10_000, 'disconnect noticed');

    // Drift and a deletion while the server is down: both undone by the agent alone.
    await jsonPatch(kc, deployPath(), [{ op: 'replace', path: '/spec/replicas', value: 6 }], 'manual-edit');
    await waitFor(async () => (await replicas()) === 2, 3000, 'replicas back to 2 with the server down', 20);
    expect((await kubeRequest(kc, 'DELETE', settingsPath())).status).toBe(200);
    await waitFor(async () => (await kubeRequest(kc, 'GET', settingsPath())).status === 200, 3000, 'settings recreated with the server down', 20);

    // A commit while the server is down: nobody can tell the agent, so the old state stays.
    const second = await stack.repos['fault-server'].commit({ files: { 'manifest.yaml': nginx(ns.name, 3, 'two') } });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await replicas()).toBe(2);

    const restarted = Date.now();
    await stack.startServer();
    await waitForLog(agent.proc, (r) => r.msg === 'applied' && r.commit === second, 20_000, `applied ${second} after the restart`);
    const catchUpMs = Date.now() - restarted;
    expect((await logs(agent.proc)).filter((r) => r.msg === 'connected to server')).toHaveLength(2);

    // Converged, and the server knows it.
    expect(await replicas()).toBe(3);
    expect(((await kubeRequest(kc, 'GET', settingsPath())).body as { data: { value: string } }).data.value).toBe('two');
    const row = await waitFor(async () => {
      const r = await stack.agentRow('fault-server');
      return r.status?.connected && r.status.applied['p-fault-server']?.commit === second ? r : undefined;
    }, 10_000, 'agent list: connected with the new commit applied');
    expect(row.status?.applied['p-fault-server']).toMatchObject({ commit: second, result: 'applied' });

    // Drift is still reverted after the reconnect.
    await jsonPatch(kc, deployPath(), [{ op: 'replace', path: '/spec/replicas', value: 7 }], 'manual-edit');
    await waitFor(async () => (await replicas()) === 3, 3000, 'replicas back to 3 after the reconnect', 20);
    console.log(`server restart: caught up ${catchUpMs} ms after the server started again; whole test ${Date.now() - t0} ms`);
  }, 60_000);
});
