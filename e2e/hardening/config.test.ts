/**
 * Hardening, item 1: a config.yaml naming a project id that is no GitLab project path (a path
 * that climbs out, a cloud metadata URL, an explicitly empty id, 10,000 characters) is a config
 * problem of that agent alone, with file:line, and never reaches the Git layer. Before the fix the
 * id was thrown at by the Git layer under an un-awaited config read: an unhandled rejection, and
 * the server exited on every start (a crash loop).
 *
 * Against the real server process: it stays up, the problem shows in that agent's `agent list`
 * row and `error` message, the other agents get their next commit, a bad config pushed while the
 * server runs changes nothing for anyone else (the agent keeps its last valid config), and a
 * restart with the bad configs still starts.
 */
import { describe, expect, it } from '@jest/globals';
import {
  DEFAULT_TENANT_CONFIG,
  TENANT_CONFIG_PROJECT,
  TENANT_MANIFEST_PROJECT,
  configMapManifest,
  useTenantServer,
  type TenantServer,
} from '../harness/server-process.js';
import { waitFor } from '../harness/wait.js';

const withId = (id: string): string =>
  `gitops:\n  manifest_projects:\n  - id: ${JSON.stringify(id)}\n    paths:\n    - glob: '/**/*.yaml'\n`;

/** Agent name → the id its config names (line 3 of its config.yaml). */
const BAD: Record<string, string> = {
  dots: '../../etc',
  metadata: 'http://169.254.169.254/latest',
  empty: '',
  long: 'a'.repeat(10_000),
};

const tenant = useTenantServer({
  agents: [
    { name: 'good' },
    { name: 'flip' },
    ...Object.entries(BAD).map(([name, id]) => ({ name, config: withId(id) })),
  ],
});

async function configProblem(
  ts: TenantServer,
  name: string,
): Promise<{ code: string; message: string; line?: number }> {
  return waitFor(
    async () => (await ts.agentRow(name)).status?.configProblems?.[0],
    20_000,
    `a config problem in agent list for ${name}`,
  );
}

/** Log records of the server process that say it lost a promise or crashed. */
async function crashLines(ts: TenantServer): Promise<string[]> {
  return (await ts.logs())
    .filter((r) => /unhandled|uncaught/i.test(String(r.msg)) || r.msg === 'fleet task failed')
    .map((r) => JSON.stringify(r).slice(0, 300));
}

describe('hardening: project ids in config.yaml', () => {
  it('keeps the server up and shows each bad id to its agent only, with file:line', async () => {
    const ts = tenant();
    for (const name of Object.keys(BAD)) {
      const problem = await configProblem(ts, name);
      expect(problem.code).toBe('CONFIG_INVALID_VALUE');
      expect(problem.line).toBe(3);
      expect(problem.message).toMatch(
        new RegExp(`^\\.gitlab/agents/${name}/config\\.yaml:3:\\d+: gitops\\.manifest_projects\\[0\\]\\.id: `),
      );
      // The 10,000-character id is quoted cut short.
      expect(problem.message.length).toBeLessThan(400);
    }
    expect(ts.alive()).toBe(true);
    expect((await ts.healthz()).status).toBe(200);

    // The agent concerned hears it in an `error` message when it connects.
    const dots = await ts.connect('dots');
    const error = await dots.next('error');
    expect(error.problems[0].message).toMatch(
      /^\.gitlab\/agents\/dots\/config\.yaml:3:9: gitops\.manifest_projects\[0\]\.id: "\.\.\/\.\.\/etc" is not a GitLab project path/,
    );
    expect(await dots.collect('desired', 300)).toEqual([]);

    // Everybody else gets the current and the next commit.
    const good = await ts.connect('good');
    expect((await good.next('desired', 15_000)).project).toBe(TENANT_MANIFEST_PROJECT);
    const sha = await ts.commit(TENANT_MANIFEST_PROJECT, { 'manifest.yaml': configMapManifest('tenant', 'two') });
    expect((await good.next('desired', 15_000)).commit).toBe(sha);
    expect(await crashLines(ts)).toEqual([]);
  });

  it('a bad id pushed while the server runs leaves that agent its last valid config and nobody else notices', async () => {
    const ts = tenant();
    const flip = await ts.connect('flip');
    const good = await ts.connect('good');
    await flip.next('desired', 15_000);
    await good.next('desired', 15_000);
    await ts.commit(TENANT_CONFIG_PROJECT, { '.gitlab/agents/flip/config.yaml': withId('../../etc') });
    const error = await flip.next('error', 15_000);
    expect(error.problems[0]).toMatchObject({
      code: 'CONFIG_INVALID_VALUE',
      line: 3,
      message: expect.stringMatching(/^\.gitlab\/agents\/flip\/config\.yaml:3:\d+: /),
    });
    expect((await configProblem(ts, 'flip')).line).toBe(3);

    const sha = await ts.commit(TENANT_MANIFEST_PROJECT, { 'manifest.yaml': configMapManifest('tenant', 'three') });
    expect((await good.next('desired', 15_000)).commit).toBe(sha);
    // Its last valid config stays in force: it still follows gitops-project.
    expect((await flip.next('desired', 15_000)).commit).toBe(sha);
    expect(ts.alive()).toBe(true);
    expect(await crashLines(ts)).toEqual([]);

    // Fixing the file clears the problem.
    await ts.commit(TENANT_CONFIG_PROJECT, { '.gitlab/agents/flip/config.yaml': DEFAULT_TENANT_CONFIG });
    await waitFor(
      async () => (await ts.agentRow('flip')).status?.configProblems === undefined,
      15_000,
      'flip problem cleared',
    );
  });

  it('starts again with the bad configs in place (no crash loop)', async () => {
    const ts = tenant();
    await ts.restart();
    const good = await ts.connect('good');
    expect((await good.next('desired', 15_000)).project).toBe(TENANT_MANIFEST_PROJECT);
    // Found again by the new process (not only the status the old one left behind).
    for (const name of Object.keys(BAD))
      await ts.waitForLog(
        (r) => String(r.msg).startsWith('invalid agent config') && r.agent === name,
        15_000,
        `invalid agent config for ${name}`,
      );
    for (const name of Object.keys(BAD)) expect((await configProblem(ts, name)).code).toBe('CONFIG_INVALID_VALUE');
    await new Promise((r) => setTimeout(r, 500));
    expect(ts.alive()).toBe(true);
    expect(await crashLines(ts)).toEqual([]);
  });
});
