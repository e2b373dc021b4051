/**
 * Fault: the Git host goes down. The server keeps serving the last commit it read (an agent that
 * lost its own state still gets it), reports the error in `agent list -o json` and to the agent,
 * also after a server restart with Git still down (then it is the config project that is
 * unreachable, and the agent keeps enforcing what it has), and once the host is back the errors
 * clear without a new commit and the next commit applies. On the reusable stack
 * (e2e/harness/stack.ts): real server, agent as in a pod, real Git smart-HTTP server.
 */
import { describe, expect, it } from '@jest/globals';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { deploymentReplicas, jsonPatch, waitFor } from '../harness/kube.js';
import { useStack } from '../harness/jest-stack.js';
import { CONFIG_PROJECT, MANIFEST_PROJECT } from '../harness/stack.js';
import { nginx } from './manifests.js';

const fixture = useStack('fault-git', { pollInterval: '1s' });
const replicas = (): Promise<number | undefined> => deploymentReplicas(fixture.kc, fixture.ns.name);

describe('the Git host down', () => {
  it('keeps serving the last commit, reports the error in agent list and to the agent, and recovers when the host is back', async () => {
    const { kc, ns, stack } = fixture;
    const t0 = Date.now();
    const first = await stack.commit({ 'manifest.yaml': nginx(ns.name, 2) });
    await stack.waitForLog(stack.agent!, (r) => r.msg === 'applied' && r.commit === first, 20_000, `applied ${first}`);

    await stack.gitServer.stop();
    const downAt = Date.now();
    const reported = await waitFor(
      async () => {
        const row = (await stack.agentList())[0];
        return row?.status?.sourceProblems?.[MANIFEST_PROJECT] ? row : undefined;
      },
      15_000,
      'agent list: a source problem for the manifest project',
      100,
    );
    const reportMs = Date.now() - downAt;
    const problem = reported.status!.sourceProblems![MANIFEST_PROJECT];
    expect(problem.message).toMatch(/gitops-project/);
    expect(problem.message).not.toMatch(/token|password/i);
    // The last commit stays applied and in force.
    expect(reported.status!.applied[MANIFEST_PROJECT]).toMatchObject({ commit: first, result: 'applied' });
    await stack.waitForLog(
      stack.agent!,
      (r) => r.msg === 'server reported a problem' && r.project === MANIFEST_PROJECT,
      10_000,
      'the problem told to the agent',
    );
    await jsonPatch(
      kc,
      `/apis/apps/v1/namespaces/${ns.name}/deployments/nginx`,
      [{ op: 'replace', path: '/spec/replicas', value: 4 }],
      'manual-edit',
    );
    await waitFor(async () => (await replicas()) === 2, 3000, 'drift reverted with Git down', 20);

    // An agent that lost its state (a rescheduled pod) still gets the last commit from the server.
    await stack.stopAgent();
    await rm(path.join(stack.dir, 'agent-state'), { recursive: true, force: true });
    await stack.startAgent();
    await stack.waitForLog(
      stack.agent!,
      (r) => r.msg === 'desired state received' && r.commit === first,
      15_000,
      `${first} served with Git down`,
    );
    await stack.waitForLog(
      stack.agent!,
      (r) => r.msg === 'applied' && r.commit === first,
      15_000,
      `${first} applied by the new agent`,
    );

    // The server restarted while Git is still down has no commit to serve and cannot even read
    // config.yaml: the agent keeps what it has (an empty desired state would prune everything) and
    // is told the config project is unreachable; agent list says so too.
    await stack.stopServer();
    const restartedAt = Date.now();
    await stack.startServer();
    await stack.waitForLog(
      stack.agent!,
      (r) =>
        r.msg === 'server reported a problem' &&
        r.project === CONFIG_PROJECT &&
        Date.parse(String(r.time)) >= restartedAt - 1000,
      15_000,
      'the config project problem told to the reconnected agent',
    );
    await waitFor(
      async () => {
        const row = (await stack.agentList())[0];
        return row?.status?.connected && row.status.sourceProblems?.[CONFIG_PROJECT];
      },
      15_000,
      'agent list after the server restart: connected, config project unreachable',
      100,
    );
    await jsonPatch(
      kc,
      `/apis/apps/v1/namespaces/${ns.name}/deployments/nginx`,
      [{ op: 'replace', path: '/spec/replicas', value: 5 }],
      'manual-edit',
    );
    await waitFor(
      async () => (await replicas()) === 2,
      3000,
      'drift reverted after the server restart with Git down',
      20,
    );
    expect(
      (await stack.logs(stack.agent!)).filter((r) => r.msg === 'desired state received' && r.commit !== first),
    ).toEqual([]);

    // The host comes back: the error clears without a new commit, and the next commit applies.
    await stack.gitServer.start();
    const upAt = Date.now();
    await waitFor(
      async () => {
        const row = (await stack.agentList())[0];
        return row?.status && !row.status.sourceProblems;
      },
      15_000,
      'agent list: the source problem cleared once Git is back',
      100,
    );
    const clearMs = Date.now() - upAt;
    const second = await stack.commit({ 'manifest.yaml': nginx(ns.name, 3) });
    await stack.waitForLog(
      stack.agent!,
      (r) => r.msg === 'applied' && r.commit === second,
      20_000,
      `applied ${second}`,
    );
    expect(await replicas()).toBe(3);
    const row = await waitFor(
      async () => {
        const r = (await stack.agentList())[0];
        return r?.status?.applied[MANIFEST_PROJECT]?.commit === second ? r : undefined;
      },
      10_000,
      'agent list: the new commit applied',
      100,
    );
    expect(row.status!.applied[MANIFEST_PROJECT].result).toBe('applied');
    expect(row.status!.sourceProblems?.[MANIFEST_PROJECT]).toBeUndefined();
    expect(row.status!.projectErrors?.[MANIFEST_PROJECT]).toBeUndefined();
    console.log(
      `git down: reported in agent list after ${reportMs} ms, cleared ${clearMs} ms after the host was back; test ${Date.now() - t0} ms`,
    );
  }, 60_000);
});
