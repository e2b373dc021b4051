/**
 * Hardening, items 1 and 10: the state dir. Before the fix, `agent create --config-project
 * ../../etc` was accepted (and the server then refused to start), an agent record with only an
 * `id` crashed the server at start (and on every restart), and deleting agents.json under a
 * running server revoked every agent with "do not reconnect" (close code 4003).
 *
 * Against the real server process and the real CLI: a bad --config-project is refused and
 * nothing is written; bad records are skipped and reported (log with file and line, a metric,
 * `agent list` warnings) while the server starts and the other agents connect and get the next
 * commit; agents.json deleted under the running server is "unreadable": sessions stay, nobody is
 * told REVOKED (4003), a known agent can still connect, and CLI writes refuse to replace the registry;
 * a missing agents.json with a journal, and a missing state dir, start as documented.
 */
import { execFile } from 'node:child_process';
import { appendFile, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { connectWithToken } from '../server/client.js';
import {
  TENANT_AUDIENCE,
  TENANT_MANIFEST_PROJECT,
  configMapManifest,
  useTenantServer,
  type TenantServer,
} from '../harness/server-process.js';
import { repoRoot } from '../harness/controlplane.js';
import { waitFor } from '../harness/wait.js';

// first: agents.json (the first create writes it); second, third: agents.journal.
const tenant = useTenantServer({ agents: [{ name: 'first' }, { name: 'second' }, { name: 'third' }] });

let value = 0;
const nextCommit = (ts: TenantServer): Promise<string> =>
  ts.commit(TENANT_MANIFEST_PROJECT, { 'manifest.yaml': configMapManifest('tenant', `v${++value}`) });

/** One sample of the server's /metrics, or NaN when absent. */
async function metric(ts: TenantServer, series: string): Promise<number> {
  const { body } = await ts.get('/metrics');
  const line = body.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

/** Log lines of a lost promise or a crash. */
async function crashLines(ts: TenantServer): Promise<string[]> {
  return (await ts.logs())
    .filter((r) => /unhandled|uncaught/i.test(String(r.msg)))
    .map((r) => JSON.stringify(r).slice(0, 300));
}

describe('hardening: the state dir', () => {
  it('agent create refuses a config project that is no GitLab path, exits non-zero and writes nothing', async () => {
    const ts = tenant();
    const before = await readFile(path.join(ts.stateDir, 'agents.journal'), 'utf8');
    for (const bad of ['../../etc', 'http://169.254.169.254/latest', '', 'a'.repeat(300)]) {
      const out = await ts.cli('agent', 'create', 'intruder', '--config-project', bad);
      expect(out).toMatchObject({ code: 2, stdout: '' });
      expect(out.stderr).toMatch(
        /^error: agent intruder: --config-project ".*": .+; name a project such as group\/kubernetes-agent\n$/,
      );
      expect(out.stderr.length).toBeLessThan(300);
    }
    const badAllow = await ts.cli(
      'agent',
      'create',
      'intruder',
      '--config-project',
      'kubernetes-agent',
      '--allow-project',
      '../',
    );
    expect(badAllow.code).toBe(2);
    expect(badAllow.stderr).toMatch(/--allow-project "\.\.\/": segment 1 must start/);
    expect(await readFile(path.join(ts.stateDir, 'agents.journal'), 'utf8')).toBe(before);
    expect((await ts.agentList()).map((r) => r.name)).toEqual(['first', 'second', 'third']);
  });

  it('skips a record with only an id and one with a config project ../../etc at start; the others connect and get the next commit', async () => {
    const ts = tenant();
    const journal = path.join(ts.stateDir, 'agents.journal');
    const second = JSON.parse((await readFile(journal, 'utf8')).split('\n')[0]) as Record<string, unknown>;
    // What an earlier version's `agent create` accepted, and a record cut down by hand.
    await appendFile(
      journal,
      `${JSON.stringify({ id: 'f'.repeat(32) })}\n${JSON.stringify({ ...second, id: 'e'.repeat(32), name: 'climber', configProject: '../../etc' })}\n`,
    );
    await ts.restart();
    expect(ts.alive()).toBe(true);
    const skipped = (await ts.logs()).filter((r) => r.msg === 'agent record skipped');
    expect(skipped.map((r) => [r.file, r.line])).toEqual([
      [journal, 3],
      [journal, 4],
    ]);
    expect(String(skipped[1].problem)).toMatch(/^configProject: segment 1 must start/);
    expect(await metric(ts, 'gitops_server_state_records_skipped{kind="agent"}')).toBe(2);

    const list = await ts.cli('agent', 'list');
    expect(list.code).toBe(0);
    expect(list.stderr).toContain(`warning: ${journal}:3: agent record skipped: name: `);
    expect(list.stderr).toContain(`warning: ${journal}:4: agent record skipped (climber): configProject: `);
    expect(list.stdout).not.toContain('climber');

    const clients = await Promise.all(['first', 'second', 'third'].map((n) => ts.connect(n)));
    for (const c of clients) await c.next('desired', 15_000);
    const sha = await nextCommit(ts);
    for (const c of clients) expect((await c.next('desired', 15_000)).commit).toBe(sha);
    expect(await metric(ts, 'gitops_server_unhandled_rejections_total')).toBe(0);
    expect(await crashLines(ts)).toEqual([]);
  });

  it('agents.json deleted while it runs: sessions stay, nobody is told REVOKED, a known agent still connects, writes refuse', async () => {
    const ts = tenant();
    const file = path.join(ts.stateDir, 'agents.json');
    const saved = await readFile(file, 'utf8');
    const first = await ts.connect('first');
    const second = await ts.connect('second');
    await first.next('desired', 15_000);
    await second.next('desired', 15_000);
    const revokedBefore = (await ts.logs()).filter((r) => r.msg === 'agents changed' && Number(r.revoked) > 0).length;

    await rm(file);
    const unreadable = await ts.waitForLog(
      (r) => r.msg === 'agents file unreadable; keeping the agents known',
      5_000,
      'the unreadable line',
    );
    expect(unreadable).toMatchObject({ file, problem: 'missing' });
    expect(await metric(ts, 'gitops_server_agents_file_unreadable')).toBe(1);
    const closedEarly = await Promise.race([
      first.closed,
      second.closed,
      new Promise((r) => setTimeout(() => r('open'), 1_500)),
    ]);
    expect(closedEarly).toBe('open');
    expect((await ts.logs()).filter((r) => r.msg === 'agents changed' && Number(r.revoked) > 0)).toHaveLength(
      revokedBefore,
    );

    // `first` lives only in the deleted agents.json: the server still knows it.
    const again = await ts.connect('first');
    await again.next('desired', 15_000);
    const sha = await nextCommit(ts);
    for (const c of [first, second, again]) expect((await c.next('desired', 15_000)).commit).toBe(sha);

    // A CLI write now would replace the registry with the journal's agents alone.
    const create = await ts.cli('agent', 'create', 'late', '--config-project', 'kubernetes-agent');
    expect(create.code).toBe(2);
    expect(create.stderr).toMatch(
      /agents\.json is missing, but agents\.journal shows this state dir held agents: restore agents\.json from a backup/,
    );
    const revoke = await ts.cli('agent', 'revoke', 'second');
    expect(revoke.code).toBe(2);

    await writeFile(file, saved, { mode: 0o600 });
    await ts.waitForLog((r) => r.msg === 'agents file readable again', 5_000, 'the readable-again line');
    expect(await metric(ts, 'gitops_server_agents_file_unreadable')).toBe(0);
    expect(await Promise.race([first.closed, new Promise((r) => setTimeout(() => r('open'), 500))])).toBe('open');
    expect(ts.alive()).toBe(true);
    expect(await crashLines(ts)).toEqual([]);
  });

  it('starts from the journal alone when agents.json is missing at start, as documented', async () => {
    const ts = tenant();
    await rm(path.join(ts.stateDir, 'agents.json'));
    await ts.restart();
    const second = await ts.connect('second');
    await second.next('desired', 15_000);
    await expect(ts.connect('first')).rejects.toThrow(/upgrade refused: 40[13]/);
    expect(await metric(ts, 'gitops_server_agents_file_unreadable')).toBe(0);
  });

  it('starts without a state dir, creating it 0700, and takes new agents', async () => {
    const ts = tenant();
    // A state dir that does not exist yet (removing the harness's one under the running server
    // would let that server's shutdown flush write status/ into it again).
    const stateDir = path.join(ts.dir, 'state-new');
    await ts.restart(['--state-dir', stateDir]);
    expect(ts.alive()).toBe(true);
    expect((await stat(stateDir)).mode & 0o777).toBe(0o700);
    const cli = (...args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [path.join(repoRoot(), 'dist', 'bin', 'gitops-server.js'), ...args, '--state-dir', stateDir],
          (err, stdout, stderr) => {
            resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
          },
        );
      });
    // The config project still holds first's config.yaml: a new record (and token) for that name.
    const made = await cli('agent', 'create', 'first', '--config-project', 'kubernetes-agent');
    expect(made).toMatchObject({ code: 0, stderr: expect.stringMatching(/^agent first created/) });
    const fresh = await waitFor(
      async () => connectWithToken(ts.connectUrl, ts.ca, made.stdout.trim(), TENANT_AUDIENCE).catch(() => undefined),
      5_000,
      'the new agent connects',
    );
    expect((await fresh.next('desired', 15_000)).project).toBe(TENANT_MANIFEST_PROJECT);
    fresh.ws.close();
  });
});

describe('hardening: the process-wide guards of serve (dist/src/common/process-guards.js in a real node process)', () => {
  const script = (body: string): string => `
    const { installProcessGuards } = await import(${JSON.stringify(path.join(repoRoot(), 'dist', 'src', 'common', 'process-guards.js'))});
    const { createLogger } = await import(${JSON.stringify(path.join(repoRoot(), 'dist', 'src', 'common', 'logger.js'))});
    const guards = installProcessGuards({ logger: createLogger({ name: 'probe' }) });
    ${body}`;
  const runNode = (body: string) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        ['--input-type=module', '-e', script(body)],
        { timeout: 10_000 },
        (err, stdout, stderr) => {
          resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
        },
      );
    });

  it('an unhandled rejection is logged and counted and the process carries on', async () => {
    const out = await runNode(`
      let counted = 0;
      guards.countWith({ inc: (v = 1) => { counted += v; } });
      Promise.reject(new Error('project "../../etc": nobody awaited this'));
      void (async () => { throw Object.assign(new Error('second'), { code: 'GIT_BAD_PROJECT_ID' }); })();
      await new Promise((r) => setTimeout(r, 100));
      process.stdout.write('alive ' + counted + '\\n');`);
    expect(out.code).toBe(0);
    expect(out.stdout).toBe('alive 2\n');
    const lines = out.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => [l.msg, l.err])).toEqual([
      ['unhandled promise rejection', 'project "../../etc": nobody awaited this'],
      ['unhandled promise rejection', 'second'],
    ]);
    expect(lines[1]).toMatchObject({ code: 'GIT_BAD_PROJECT_ID', total: 2 });
  });

  it('an uncaught exception is logged and exits with status 1', async () => {
    const out = await runNode(
      `setTimeout(() => { throw new TypeError('x is undefined'); }, 10); setTimeout(() => process.stdout.write('still here\\n'), 500);`,
    );
    expect(out.code).toBe(1);
    expect(out.stdout).toBe('');
    expect(out.stderr).toContain('"msg":"uncaught exception; exiting"');
  });
});
