/**
 * Fault: kube-apiserver restarts under a running agent. Its watches break and must resume by
 * themselves: afterwards a manual edit is reverted and a deleted object recreated again, and a new
 * commit still applies. This file runs its own control plane (never the shared one of jest's global
 * setup, which other test files are using) and restarts only that one's apiserver. The product
 * runs on the reusable stack (e2e/harness/stack.ts): the agent as in a pod, with a ServiceAccount
 * token that must still be accepted by the restarted apiserver.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { KubeConfig } from '@kubernetes/client-node';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { deploymentReplicas, jsonPatch, kubeRequest, waitFor } from '../harness/kube.js';
import { startStack, type Stack } from '../harness/stack.js';
import { nginx } from './manifests.js';

const NS = 'fault-apiserver';

let cp: ControlPlane;
let kc: KubeConfig;
let stack: Stack;

const deployPath = `/apis/apps/v1/namespaces/${NS}/deployments/nginx`;
const settingsPath = `/api/v1/namespaces/${NS}/configmaps/settings`;

const replicas = (): Promise<number | undefined> => deploymentReplicas(kc, NS);

/** Milliseconds until `check` holds (polling every 20 ms). */
async function timeUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const t = Date.now();
  await waitFor(check, timeoutMs, what, 20);
  return Date.now() - t;
}

beforeAll(async () => {
  cp = await startControlPlane({ handleSignals: false });
  kc = cp.kubeConfig();
  expect((await kubeRequest(kc, 'POST', '/api/v1/namespaces', { metadata: { name: NS } })).status).toBe(201);
  stack = await startStack({ kubeConfig: kc, defaultNamespace: NS, pollInterval: '1s' });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
  await cp?.stop();
}, 60_000);

describe('kube-apiserver restarted under a running agent', () => {
  it('resumes its watches: drift is reverted and deletions recreated again, and new commits apply', async () => {
    const t0 = Date.now();
    const agent = stack.agent!;
    const first = await stack.commit({ 'manifest.yaml': nginx(NS, 2) });
    await stack.waitForLog(agent, (r) => r.msg === 'applied' && r.commit === first, 20_000, `applied ${first}`);
    await jsonPatch(kc, deployPath, [{ op: 'replace', path: '/spec/replicas', value: 5 }], 'manual-edit');
    const before = await timeUntil(async () => (await replicas()) === 2, 5000, 'drift reverted before the restart');

    const restartStarted = Date.now();
    await cp.restartApiServer();
    const restartMs = Date.now() - restartStarted;

    // The first edit after the restart: reverted only once the agent's watch is back.
    await jsonPatch(kc, deployPath, [{ op: 'replace', path: '/spec/replicas', value: 6 }], 'manual-edit');
    const after = await timeUntil(
      async () => (await replicas()) === 2,
      20_000,
      'drift reverted after the apiserver restart',
    );
    const uid = ((await kubeRequest(kc, 'GET', settingsPath)).body as { metadata: { uid: string } }).metadata.uid;
    expect((await kubeRequest(kc, 'DELETE', settingsPath)).status).toBe(200);
    await waitFor(
      async () => {
        const res = await kubeRequest(kc, 'GET', settingsPath);
        return res.status === 200 && (res.body as { metadata: { uid: string } }).metadata.uid !== uid;
      },
      5000,
      'settings recreated after the apiserver restart',
      20,
    );

    const second = await stack.commit({ 'manifest.yaml': nginx(NS, 3, 'two') });
    await stack.waitForLog(agent, (r) => r.msg === 'applied' && r.commit === second, 20_000, `applied ${second}`);
    expect(await replicas()).toBe(3);
    // Still the leader (or the leader again): one agent enforces, and it is alive.
    expect(agent.exit()).toBeUndefined();
    const leadership = (await stack.logs(agent))
      .filter((r) => r.msg === 'became leader' || r.msg === 'lost leadership')
      .map((r) => r.msg);
    expect(leadership[leadership.length - 1]).toBe('became leader');
    console.log(
      `apiserver restart: down/up ${restartMs} ms; drift reverted in ${before} ms before, ${after} ms after it was ready again; leadership ${JSON.stringify(leadership)}; test ${Date.now() - t0} ms`,
    );
  }, 60_000);
});
