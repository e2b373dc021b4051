/**
 * Hardening, item 5: cross-tenant reads. agent1's config project is `kubernetes-agent` (root
 * level); its config.yaml names `tenant-b/secret-manifests`, tenant B's project with a Secret.
 * Before the fix agent1 received tenant B's Secret in a desired message. Now an agent reads only
 * its config project's group hierarchy plus what the registry allows (project-access.ts):
 *
 * - agent1 gets its own project and never a desired message with tenant B's files, and the
 *   refusal shows as a config problem naming file:line, the project, the rule and the command;
 * - tenant B's own agent (config project `tenant-b/config`) reads its project as before;
 * - after `gitops-server agent allow agent1 --project tenant-b/secret-manifests` the running
 *   server sends it to agent1 without a commit, and `agent disallow` takes it away again.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import {
  TENANT_MANIFEST_PROJECT,
  configMapManifest,
  useTenantServer,
  type TenantServer,
} from '../harness/server-process.js';
import { waitFor } from '../harness/wait.js';

const SECRET_PROJECT = 'tenant-b/secret-manifests';
const SECRET_VALUE = `tenant-b-${randomBytes(8).toString('hex')}`;
const SECRET = `apiVersion: v1\nkind: Secret\nmetadata:\n  name: tenant-b-db\nstringData:\n  password: ${SECRET_VALUE}\n`;

const AGENT1_CONFIG = `gitops:
  manifest_projects:
  - id: ${TENANT_MANIFEST_PROJECT}
    paths:
    - glob: '/**/*.yaml'
  - id: ${SECRET_PROJECT}
    paths:
    - glob: '/**/*.yaml'
`;
const TENANT_B_CONFIG = `gitops:\n  manifest_projects:\n  - id: ${SECRET_PROJECT}\n`;

const tenant = useTenantServer({
  agents: [
    { name: 'agent1', config: AGENT1_CONFIG },
    { name: 'tenantb', configProject: 'tenant-b/config', config: TENANT_B_CONFIG },
    { name: 'bystander' },
  ],
  projects: { [SECRET_PROJECT]: { 'secret.yaml': SECRET } },
});

const REFUSAL = `.gitlab/agents/agent1/config.yaml:6: gitops.manifest_projects[1].id: ${SECRET_PROJECT} is outside the root level of this agent's config project kubernetes-agent (only other root-level projects), and the registry does not allow it for this agent; it is not read. An operator can allow it with \`gitops-server agent allow agent1 --project ${SECRET_PROJECT}\``;

const carriesSecret = (messages: unknown[]): boolean => messages.some((m) => JSON.stringify(m).includes(SECRET_VALUE));

async function configProblems(
  ts: TenantServer,
  name: string,
): Promise<{ code: string; message: string }[] | undefined> {
  return (await ts.agentRow(name)).status?.configProblems;
}

describe('hardening: an agent reads only the manifest projects it may', () => {
  it("does not send tenant B's Secret to agent1, and tells agent1 why", async () => {
    const ts = tenant();
    const agent1 = await ts.connect('agent1');
    const first = await agent1.next('desired', 15_000);
    expect(first.project).toBe(TENANT_MANIFEST_PROJECT);
    const error = await agent1.next('error', 15_000);
    expect(error.problems).toEqual([
      { code: 'CONFIG_PROJECT_NOT_ALLOWED', file: '.gitlab/agents/agent1/config.yaml', line: 6, message: REFUSAL },
    ]);
    const config = await agent1.next('config', 15_000);
    expect(config.projects).toEqual([TENANT_MANIFEST_PROJECT]);
    // Tenant B's own agent gets its project (so the server can read it, and did not send it to agent1).
    const tenantB = await ts.connect('tenantb');
    const theirs = await tenantB.next('desired', 15_000);
    expect(theirs.project).toBe(SECRET_PROJECT);
    expect(carriesSecret([theirs])).toBe(true);
    // A new commit to tenant B's project reaches tenant B, still not agent1.
    const sha = await ts.commit(SECRET_PROJECT, { 'secret.yaml': SECRET, 'more.yaml': configMapManifest('b', 'two') });
    expect((await tenantB.next('desired', 15_000)).commit).toBe(sha);
    await new Promise((r) => setTimeout(r, 500));
    expect(agent1.messages.filter((m) => m.type === 'desired').map((m) => (m as { project: string }).project)).toEqual([
      TENANT_MANIFEST_PROJECT,
    ]);
    expect(carriesSecret(agent1.messages)).toBe(false);

    const row = await waitFor(() => configProblems(ts, 'agent1'), 10_000, 'agent1 config problem in agent list');
    expect(row[0]).toMatchObject({ code: 'CONFIG_PROJECT_NOT_ALLOWED', message: REFUSAL });
    // The server never logged the Secret's value either.
    expect((await ts.logs()).some((r) => JSON.stringify(r).includes(SECRET_VALUE))).toBe(false);
    // The others keep their sessions and get the next commit.
    const bystander = await ts.connect('bystander');
    await bystander.next('desired', 15_000);
    const next = await ts.commit(TENANT_MANIFEST_PROJECT, { 'manifest.yaml': configMapManifest('tenant', 'two') });
    expect((await bystander.next('desired', 15_000)).commit).toBe(next);
    expect((await agent1.next('desired', 15_000)).commit).toBe(next);
    expect(ts.alive()).toBe(true);
  });

  it('sends the project once an operator allows it, on the running server, and stops when disallowed', async () => {
    const ts = tenant();
    const agent1 = await ts.connect('agent1');
    await agent1.next('desired', 15_000);
    const allowed = await ts.cli('agent', 'allow', 'agent1', '--project', SECRET_PROJECT);
    expect(allowed).toMatchObject({ code: 0 });
    const desired = await waitFor(
      () => agent1.messages.find((m) => m.type === 'desired' && m.project === SECRET_PROJECT),
      15_000,
      `a desired message for ${SECRET_PROJECT}`,
    );
    expect(carriesSecret([desired])).toBe(true);
    await waitFor(
      async () => (await configProblems(ts, 'agent1')) === undefined,
      10_000,
      'agent1 config problem cleared',
    );
    expect(agent1.messages.filter((m) => m.type === 'config').at(-1)).toMatchObject({
      projects: [TENANT_MANIFEST_PROJECT, SECRET_PROJECT],
      errors: [],
    });

    const disallowed = await ts.cli('agent', 'disallow', 'agent1', '--project', SECRET_PROJECT);
    expect(disallowed).toMatchObject({ code: 0 });
    await waitFor(
      () =>
        agent1.messages.filter((m) => m.type === 'config').at(-1)?.type === 'config' &&
        (agent1.messages.filter((m) => m.type === 'config').at(-1) as { projects: string[] }).projects.length === 1,
      15_000,
      'a config without the project',
    );
    const problems = await waitFor(() => configProblems(ts, 'agent1'), 10_000, 'agent1 config problem back');
    expect(problems[0].code).toBe('CONFIG_PROJECT_NOT_ALLOWED');
    // A commit to tenant B's project is not sent to agent1 any more.
    const before = agent1.messages.length;
    const sha = await ts.commit(SECRET_PROJECT, { 'secret.yaml': SECRET.replace('tenant-b-db', 'tenant-b-db2') });
    await new Promise((r) => setTimeout(r, 1000));
    expect(agent1.messages.slice(before).some((m) => m.type === 'desired' && m.commit === sha)).toBe(false);
    expect(ts.alive()).toBe(true);
  });
});
