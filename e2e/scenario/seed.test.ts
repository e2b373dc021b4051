/**
 * The seed scenario of DESIGN.md, end to end with real processes: the Git server, `gitops-server
 * serve`, and `gitops-agent run` as in a pod (ServiceAccount token, RBAC from manifests/agent)
 * against the real API server, with a real node (jest's `node` project: kubelet, containerd), so the
 * nginx pods really run. One stack, steps in order, each asserting what a user sees: the live
 * Deployment, its pods Running and Ready (2, then 3; the extra ones of a hand scale-up terminated;
 * new ones after a delete; none once pruned), both programs' log lines naming the commit, and
 * `gitops-server agent list -o json`.
 *
 * The control plane is shared by the jest run, so the Deployment goes to a fresh namespace (named
 * as the manifest project's default_namespace, which also holds the agent's inventory) instead
 * of `default`; `npm run demo` uses `default` on a control plane of its own.
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import type { AgentListRow } from '../../src/server/registry.js';
import { describeWrite, syncAuditLog, writeRequests } from '../harness/audit.js';
import { jsonPatch, kubeRequest, testAuditLogPath, waitFor, type TestNamespace } from '../harness/kube.js';
import { useStack } from '../harness/jest-stack.js';
import { listPods, waitForReadyPods, type PodLike } from '../harness/pods.js';
import { AGENT_NAME, MANIFEST_PROJECT, nginxDeployment, type Stack } from '../harness/stack.js';

let stack: Stack;
let ns: TestNamespace;
let deployPath = '';

async function live(): Promise<{ replicas: number; uid: string } | undefined> {
  const res = await kubeRequest(stack.kubeConfig, 'GET', deployPath);
  if (res.status !== 200) return undefined;
  const body = res.body as { spec: { replicas: number }; metadata: { uid: string } };
  return { replicas: body.spec.replicas, uid: body.metadata.uid };
}

/** How long pods may take to be Running and Ready (image imported: no pull, so seconds). */
const PODS_TIMEOUT_MS = 60_000;

function nginxPods(): Promise<PodLike[]> {
  return listPods(stack.kubeConfig, ns.name, 'app=nginx');
}

/** Waits until the Deployment's pods are exactly `n`, all Ready; their names and the ms since `since`. */
async function exactlyReady(
  n: number,
  since = Date.now(),
  notNamed: string[] = [],
): Promise<{ names: string[]; ms: number }> {
  const pods = await waitForReadyPods(stack.kubeConfig, ns.name, 'app=nginx', n, PODS_TIMEOUT_MS, notNamed);
  return { names: pods.map((p) => p.metadata.name).sort(), ms: Date.now() - since };
}

/** Milliseconds from now until `check` holds, polling every 10 ms. */
async function timeUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  await waitFor(check, timeoutMs, what, 10);
  return Date.now() - started;
}

/** agent list once it reports `sha` applied for the manifest project. */
async function listedWith(sha: string): Promise<AgentListRow> {
  return waitFor(
    async () => {
      const row = (await stack.agentList()).find((r) => r.name === AGENT_NAME);
      return row?.status?.applied[MANIFEST_PROJECT]?.commit === sha ? row : undefined;
    },
    10_000,
    `agent list showing ${sha} applied`,
  );
}

async function expectCommitLogged(sha: string, change: string): Promise<void> {
  const detected = await stack.waitForLog(
    stack.server!,
    (r) => r.msg === 'detected commit' && r.commit === sha,
    10_000,
    `detected ${sha}`,
  );
  expect(detected.project).toBe(MANIFEST_PROJECT);
  const applied = await stack.waitForLog(
    stack.agent!,
    (r) => r.msg === 'applied' && r.commit === sha,
    10_000,
    `applied ${sha}`,
  );
  expect(applied.changes).toContain(change);
}

const fixture = useStack('seed');

beforeAll(() => {
  ({ stack, ns } = fixture);
  deployPath = `/apis/apps/v1/namespaces/${ns.name}/deployments/nginx`;
});

describe('the seed scenario', () => {
  let sha3 = '';
  let running: string[] = [];

  it('starts with the agent connected and nothing applied from the empty manifest', async () => {
    const row = await waitFor(
      async () => (await stack.agentList()).find((r) => r.name === AGENT_NAME && r.status?.connected),
      10_000,
      'agent1 connected',
    );
    expect(row.configProject).toBe('kubernetes-agent');
    expect(await live()).toBeUndefined();
  });

  it('applies a pushed Deployment with 2 replicas, and both programs log the commit', async () => {
    const t0 = Date.now();
    const sha = await stack.commit(
      { 'manifest.yaml': nginxDeployment(ns.name, 2) },
      { message: 'nginx with 2 replicas' },
    );
    await waitFor(async () => (await live())?.replicas === 2, 15_000, 'Deployment with 2 replicas');
    const { ms } = await exactlyReady(2, t0);
    process.stdout.write(`seed: commit to 2 pods Ready in ${ms} ms\n`);
    await expectCommitLogged(sha, `Deployment/${ns.name}/nginx created`);
    const row = await listedWith(sha);
    expect(row.status).toMatchObject({
      connected: true,
      applied: { [MANIFEST_PROJECT]: { commit: sha, result: 'applied' } },
    });
  });

  it('scales to 3 when the commit says 3, and the agent logs the Deployment as configured', async () => {
    const t0 = Date.now();
    sha3 = await stack.commit({ 'manifest.yaml': nginxDeployment(ns.name, 3) }, { message: 'nginx with 3 replicas' });
    await waitFor(async () => (await live())?.replicas === 3, 15_000, 'Deployment with 3 replicas');
    const ready = await exactlyReady(3, t0);
    running = ready.names;
    process.stdout.write(`seed: commit to 3 pods Ready in ${ready.ms} ms\n`);
    await expectCommitLogged(sha3, `Deployment/${ns.name}/nginx configured`);
    expect((await listedWith(sha3)).status?.connected).toBe(true);
  });

  it('puts a hand-scaled Deployment back to 3 within a second, and the extra pods terminate', async () => {
    const res = await jsonPatch(
      stack.kubeConfig,
      deployPath,
      [{ op: 'replace', path: '/spec/replicas', value: 5 }],
      'manual-edit',
    );
    expect(res.status).toBe(200);
    const ms = await timeUntil(async () => (await live())?.replicas === 3, 5000, 'replicas back to 3');
    expect(ms).toBeLessThan(1000);
    const reverted = await stack.waitForLog(
      stack.agent!,
      (r) => r.msg === 'drift reverted' && r.object === `Deployment/${ns.name}/nginx`,
      5000,
      'drift reverted',
    );
    expect(reverted.manager).toBe('manual-edit');
    const row = await waitFor(
      async () => {
        const r = (await stack.agentList()).find((x) => x.name === AGENT_NAME);
        return r?.status?.lastDrift?.object === `Deployment/${ns.name}/nginx` ? r : undefined;
      },
      5000,
      'the drift in agent list',
    );
    expect(row.status).toMatchObject({
      connected: true,
      applied: { [MANIFEST_PROJECT]: { commit: sha3 } },
      lastDrift: { action: 'reverted', manager: 'manual-edit' },
    });
    // The ReplicaSet scales down the newest, not yet ready pods first: the three that ran are kept.
    expect((await exactlyReady(3)).names).toEqual(running);
  });

  it('recreates the Deployment when it is deleted', async () => {
    const before = await live();
    expect((await kubeRequest(stack.kubeConfig, 'DELETE', deployPath)).status).toBe(200);
    await waitFor(
      async () => {
        const now = await live();
        return now !== undefined && now.uid !== before?.uid && now.replicas === 3;
      },
      5000,
      'the Deployment recreated with 3 replicas',
    );
    const row = await waitFor(
      async () => {
        const r = (await stack.agentList()).find((x) => x.name === AGENT_NAME);
        return r?.status?.lastDrift?.action === 'recreated' ? r : undefined;
      },
      5000,
      'the recreation in agent list',
    );
    expect(row.status?.applied[MANIFEST_PROJECT]?.commit).toBe(sha3);
    // The old pods went with the old Deployment (garbage collection); three new ones run.
    const fresh = await exactlyReady(3, Date.now(), running);
    expect(fresh.names.filter((n) => running.includes(n))).toEqual([]);
    expect((await nginxPods()).every((p) => p.metadata.ownerReferences?.[0]?.kind === 'ReplicaSet')).toBe(true);
  });

  it('prunes the Deployment once it is removed from Git', async () => {
    const sha = await stack.commit({ 'manifest.yaml': '' }, { message: 'remove nginx' });
    await waitFor(
      async () => (await kubeRequest(stack.kubeConfig, 'GET', deployPath)).status === 404,
      15_000,
      'the Deployment pruned',
    );
    await waitFor(async () => (await nginxPods()).length === 0, PODS_TIMEOUT_MS, 'every nginx pod gone');
    await expectCommitLogged(sha, `Deployment/${ns.name}/nginx pruned`);
    expect((await listedWith(sha)).status?.connected).toBe(true);
  });

  it('made every change as the ServiceAccount of manifests/agent, and none of its requests was forbidden', async () => {
    const sa = `system:serviceaccount:${stack.installNamespace}:gitops-agent`;
    const events = await syncAuditLog(stack.kubeConfig, testAuditLogPath());
    const deployments = writeRequests(events, { namespace: ns.name, username: sa, succeededOnly: true })
      .map(describeWrite)
      .filter((w) => w.includes('apps/deployments'));
    expect(deployments).toEqual(
      expect.arrayContaining([
        `create apps/deployments ${ns.name}/nginx 201`,
        `patch apps/deployments ${ns.name}/nginx 200`,
        `delete apps/deployments ${ns.name}/nginx 200`,
      ]),
    );
    const forbidden = events.filter((e) => e.user.username === sa && e.responseStatus?.code === 403);
    expect(forbidden.map((e) => `${e.verb} ${e.requestURI}`)).toEqual([]);
    // Only writes are audited: a forbidden get, list or watch (drift watches, the Lease) would show in the agent's log.
    const refused = (await stack.logs(stack.agent!)).filter((r) => /forbidden|\b403\b/i.test(JSON.stringify(r)));
    expect(refused).toEqual([]);
  });
});
