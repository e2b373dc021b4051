/**
 * Fault: a commit with invalid YAML. Nothing of that commit is applied (not even its valid
 * files), the error with file and line is visible in `agent list -o json`, drift is still reverted
 * to the last good commit, and the next good commit applies and clears the error. On the reusable
 * stack (e2e/harness/stack.ts).
 */
import { describe, expect, it } from '@jest/globals';
import { deploymentReplicas, jsonPatch, kubeRequest, waitFor } from '../harness/kube.js';
import { useStack } from '../harness/jest-stack.js';
import { MANIFEST_PROJECT } from '../harness/stack.js';
import type { ProblemReport } from '../../src/protocol/messages.js';
import type { AgentStatus } from '../../src/server/state-files.js';
import { nginx } from './manifests.js';

const fixture = useStack('fault-yaml', { pollInterval: '1s' });
const replicas = (): Promise<number | undefined> => deploymentReplicas(fixture.kc, fixture.ns.name);

/** The apply problems `agent list` shows for the manifest project. */
function applyProblems(status: AgentStatus | undefined): ProblemReport[] {
  return status?.projectErrors?.[MANIFEST_PROJECT]?.problems ?? [];
}

async function configMap(name: string): Promise<number> {
  return (await kubeRequest(fixture.kc, 'GET', `/api/v1/namespaces/${fixture.ns.name}/configmaps/${name}`)).status;
}

/** Line 6 opens a flow mapping that never closes; the parser notices at the end of the text (line 7). */
const BROKEN = `apiVersion: v1
kind: ConfigMap
metadata:
  name: extra
data:
  value: {unclosed
`;
const FIXED = `apiVersion: v1
kind: ConfigMap
metadata:
  name: extra
data:
  value: closed
`;

describe('a commit with invalid YAML', () => {
  it('applies nothing of it, shows file and line in agent list, and the next good commit applies', async () => {
    const { kc, ns, stack } = fixture;
    const t0 = Date.now();
    const good = await stack.commit({ 'manifest.yaml': nginx(ns.name, 2) });
    await stack.waitForLog(stack.agent!, (r) => r.msg === 'applied' && r.commit === good, 20_000, `applied ${good}`);

    // A valid change (replicas 3) beside a broken file: neither may be applied.
    const bad = await stack.commit({ 'manifest.yaml': nginx(ns.name, 3), 'extra.yaml': BROKEN });
    const failed = await stack.waitForLog(
      stack.agent!,
      (r) => r.msg === 'apply failed' && r.commit === bad,
      20_000,
      `apply of ${bad} failed`,
    );
    expect(JSON.stringify(failed.errors)).toContain('extra.yaml:');
    const row = await waitFor(
      async () => {
        const r = (await stack.agentList())[0];
        return r?.status?.applied[MANIFEST_PROJECT]?.commit === bad ? r : undefined;
      },
      10_000,
      'agent list: the bad commit reported',
      100,
    );
    expect(row.status!.applied[MANIFEST_PROJECT].result).not.toBe('applied');
    const problems = applyProblems(row.status);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems[0]).toMatchObject({ file: 'extra.yaml' });
    expect(problems[0].line).toBeGreaterThanOrEqual(6);
    expect(problems[0].line).toBeLessThanOrEqual(7);
    expect(row.status!.projectErrors![MANIFEST_PROJECT].commit).toBe(bad);
    expect(problems[0].message).toMatch(/^extra\.yaml:\d+: /);
    expect(await replicas()).toBe(2);
    expect(await configMap('extra')).toBe(404);

    // The last good commit stays enforced.
    await jsonPatch(
      kc,
      `/apis/apps/v1/namespaces/${ns.name}/deployments/nginx`,
      [{ op: 'replace', path: '/spec/replicas', value: 5 }],
      'manual-edit',
    );
    await waitFor(async () => (await replicas()) === 2, 3000, 'drift reverted to the last good commit', 20);

    const fixed = await stack.commit({ 'extra.yaml': FIXED });
    await stack.waitForLog(stack.agent!, (r) => r.msg === 'applied' && r.commit === fixed, 20_000, `applied ${fixed}`);
    expect(await replicas()).toBe(3);
    expect(await configMap('extra')).toBe(200);
    const after = await waitFor(
      async () => {
        const r = (await stack.agentList())[0];
        return r?.status?.applied[MANIFEST_PROJECT]?.commit === fixed ? r : undefined;
      },
      10_000,
      'agent list: the fixed commit applied',
      100,
    );
    expect(after.status!.applied[MANIFEST_PROJECT].result).toBe('applied');
    expect(applyProblems(after.status)).toEqual([]);
    console.log(`invalid yaml: problem ${JSON.stringify(problems[0])}; test ${Date.now() - t0} ms`);
  }, 60_000);
});
