import { afterEach, describe, expect, it } from '@jest/globals';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseToken } from '../protocol/token.js';
import {
  Registry,
  boundProblems,
  createAgent,
  createAgents,
  listAgents,
  listAgentsReport,
  revokeAgent,
  updateAllowProjects,
  type AgentRecord,
  type RegistryChange,
} from './registry.js';
import type { HealthMessage } from '../protocol/messages.js';
import { createServerMetrics, registerRegistryHealth } from './metrics.js';
import { statusShardOf } from './state-files.js';

const dirs: string[] = [];
const registries: Registry[] = [];
async function stateDir(): Promise<string> {
  const dir = path.join(await mkdtemp(path.join(tmpdir(), 'gitops-reg-')), 'state');
  dirs.push(path.dirname(dir));
  return dir;
}
afterEach(async () => {
  await Promise.all(registries.splice(0).map((r) => r.close()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe('agent create / revoke / list', () => {
  it('stores only the public key, in a 0600 file inside a 0700 directory, and leaves no temp files', async () => {
    const dir = await stateDir();
    const { record, token } = await createAgent(dir, 'agent1', 'group/kubernetes-agent');
    expect(parseToken(token).agentId).toBe(record.id);
    const text = await readFile(path.join(dir, 'agents.json'), 'utf8');
    expect(text).not.toContain(token.slice(13));
    expect(JSON.parse(text).agents[0]).toMatchObject({
      name: 'agent1',
      configProject: 'group/kubernetes-agent',
      publicKey: record.publicKey,
    });
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(path.join(dir, 'agents.json'))).mode & 0o777).toBe(0o600);
    expect((await readdir(dir)).sort()).toEqual(['agents.json']);
  });

  it('refuses a duplicate or badly formed name and loses no agent when commands race', async () => {
    const dir = await stateDir();
    await createAgent(dir, 'agent1', 'p');
    await expect(createAgent(dir, 'agent1', 'p')).rejects.toMatchObject({ code: 'AGENT_EXISTS' });
    await expect(createAgent(dir, 'Bad_Name', 'p')).rejects.toMatchObject({ code: 'AGENT_BAD_NAME' });
    await Promise.all(Array.from({ length: 8 }, (_, i) => createAgent(dir, `racer-${i}`, 'p')));
    expect((await listAgents(dir)).length).toBe(9);
  });

  it('creates a batch of agents in one write, each with its own token, and creates none when one name is taken', async () => {
    const dir = await stateDir();
    await createAgent(dir, 'taken', 'p');
    const batch = await createAgents(
      dir,
      Array.from({ length: 500 }, (_, i) => ({ name: `fleet-${i}`, configProject: 'group/config' })),
    );
    expect(batch.map((b) => b.record.name)).toEqual(Array.from({ length: 500 }, (_, i) => `fleet-${i}`));
    expect(new Set(batch.map((b) => b.token)).size).toBe(500);
    expect(parseToken(batch[499].token).agentId).toBe(batch[499].record.id);
    await expect(
      createAgents(dir, [
        { name: 'fresh', configProject: 'p' },
        { name: 'taken', configProject: 'p' },
      ]),
    ).rejects.toMatchObject({ code: 'AGENT_EXISTS' });
    await expect(
      createAgents(dir, [
        { name: 'twice', configProject: 'p' },
        { name: 'twice', configProject: 'p' },
      ]),
    ).rejects.toMatchObject({ code: 'AGENT_EXISTS' });
    const names = (await listAgents(dir)).map((a) => a.name);
    expect(names).toHaveLength(501);
    expect(names).not.toContain('fresh');
  });

  it('appends creates to a journal instead of rewriting agents.json, and folds it in on revoke', async () => {
    const dir = await stateDir();
    await createAgent(dir, 'first', 'p');
    const before = await readFile(path.join(dir, 'agents.json'), 'utf8');
    const { record } = await createAgent(dir, 'second', 'p');
    await createAgents(dir, [
      { name: 'third', configProject: 'p' },
      { name: 'fourth', configProject: 'p' },
    ]);
    expect(await readFile(path.join(dir, 'agents.json'), 'utf8')).toBe(before);
    expect((await readdir(dir)).sort()).toEqual(['agents.journal', 'agents.json']);
    expect((await stat(path.join(dir, 'agents.journal'))).mode & 0o777).toBe(0o600);
    expect((await listAgents(dir)).map((a) => a.name)).toEqual(['first', 'second', 'third', 'fourth']);
    await expect(createAgent(dir, 'second', 'p')).rejects.toMatchObject({ code: 'AGENT_EXISTS' });
    await revokeAgent(dir, 'second');
    expect((await readdir(dir)).sort()).toEqual(['agents.json']);
    // One agent per line: readable, and a plain JSON document.
    const text = await readFile(path.join(dir, 'agents.json'), 'utf8');
    expect(text.split('\n')).toHaveLength(4 + 3);
    expect(JSON.parse(text).agents[1]).toMatchObject({ ...record, revokedAt: expect.any(String) });
    // The revoked name is free again, and the journal line of the old one cannot undo the revoke.
    await createAgent(dir, 'second', 'p');
    expect((await listAgents(dir)).filter((a) => a.name === 'second').map((a) => Boolean(a.revokedAt))).toEqual([
      true,
      false,
    ]);
  });

  it('ignores a journal line torn by a crash and cuts it off at the next create', async () => {
    const dir = await stateDir();
    await createAgent(dir, 'first', 'p');
    await createAgent(dir, 'second', 'p');
    await appendFile(path.join(dir, 'agents.journal'), '{"id":"0123","name":"torn","confi');
    expect((await listAgents(dir)).map((a) => a.name)).toEqual(['first', 'second']);
    await createAgent(dir, 'third', 'p');
    expect((await listAgents(dir)).map((a) => a.name)).toEqual(['first', 'second', 'third']);
    expect(await readFile(path.join(dir, 'agents.journal'), 'utf8')).not.toContain('torn');
  });

  it('rewrites agents.json once the journal holds 1,000 agents', async () => {
    const dir = await stateDir();
    await createAgent(dir, 'first', 'p');
    await createAgents(
      dir,
      Array.from({ length: 1000 }, (_, i) => ({ name: `a-${i}`, configProject: 'p' })),
    );
    expect((await readdir(dir)).sort()).toEqual(['agents.journal', 'agents.json']);
    await createAgent(dir, 'one-more', 'p');
    expect((await readdir(dir)).sort()).toEqual(['agents.json']);
    expect(JSON.parse(await readFile(path.join(dir, 'agents.json'), 'utf8')).agents).toHaveLength(1002);
  });

  it('revokes by name and says so when there is no such agent', async () => {
    const dir = await stateDir();
    await createAgent(dir, 'agent1', 'p');
    const revoked = await revokeAgent(dir, 'agent1');
    expect(revoked.revokedAt).toBeDefined();
    await expect(revokeAgent(dir, 'agent1')).rejects.toMatchObject({ code: 'AGENT_NOT_FOUND' });
  });
});

describe('Registry (server side)', () => {
  it('sees a revoke written by another command within a second and reports the key as revoked', async () => {
    const dir = await stateDir();
    const { record } = await createAgent(dir, 'agent1', 'p');
    const registry = await Registry.open(dir);
    registries.push(registry);
    expect(registry.lookupKey(record.id)?.revoked).toBe(false);
    const seen = new Promise<RegistryChange>((resolve) => registry.onChange(resolve));
    const started = Date.now();
    await revokeAgent(dir, 'agent1');
    const change = await seen;
    expect(Date.now() - started).toBeLessThan(1000);
    expect(change.revoked.map((a) => a.name)).toEqual(['agent1']);
    expect(registry.lookupKey(record.id)?.revoked).toBe(true);
  });

  it('picks up agents created while it runs, keeping the records it already holds', async () => {
    const dir = await stateDir();
    const { record: early } = await createAgent(dir, 'early', 'p');
    const registry = await Registry.open(dir);
    registries.push(registry);
    const held = registry.get(early.id);
    const seen = new Promise<RegistryChange>((resolve) => registry.onChange(resolve));
    const { record } = await createAgent(dir, 'late', 'p');
    expect((await seen).added.map((a) => a.id)).toEqual([record.id]);
    // Not a fresh copy of every record per create (the fleet holds these objects).
    expect(registry.get(early.id)).toBe(held);
  });

  it('writes status for agent list and starts the next run with every agent disconnected', async () => {
    const dir = await stateDir();
    const { record } = await createAgent(dir, 'agent1', 'p');
    const registry = await Registry.open(dir, { statusDebounceMs: 10 });
    registry.recordSessions(record.id, 1);
    registry.recordApplied(record.id, 'gitops-project', {
      commit: 'a'.repeat(40),
      digest: 'd',
      result: 'applied',
      at: new Date().toISOString(),
    });
    await registry.close();
    const rows = await listAgents(dir);
    expect(rows[0].status).toMatchObject({
      connected: true,
      applied: { 'gitops-project': { commit: 'a'.repeat(40) } },
    });
    const shards = await readdir(path.join(dir, 'status'));
    expect(shards).toHaveLength(1);
    expect((await stat(path.join(dir, 'status', shards[0]))).mode & 0o777).toBe(0o600);
    expect((await stat(path.join(dir, 'status'))).mode & 0o777).toBe(0o700);
    const again = await Registry.open(dir);
    registries.push(again);
    expect(again.status(record.id)).toMatchObject({ connected: false, sessions: 0 });
  });

  it('rewrites only the status shard of an agent that changed, with 10,000 agents, while agent list sees every agent', async () => {
    const dir = await stateDir();
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const agents = Array.from({ length: 10_000 }, (_, i) => ({
      id: i.toString(16).padStart(32, '0'),
      name: `agent${i}`,
      configProject: 'p',
      publicKey: 'A'.repeat(43),
      createdAt: '2026-01-01T00:00:00.000Z',
    }));
    await writeFile(path.join(dir, 'agents.json'), JSON.stringify({ version: 1, agents }));
    const registry = await Registry.open(dir, { statusDebounceMs: 60_000 });
    registries.push(registry);
    for (const a of agents)
      registry.recordApplied(a.id, 'gitops-project', {
        commit: 'a'.repeat(40),
        digest: 'sha256:' + 'd'.repeat(64),
        result: 'applied',
        at: '2026-01-01T00:00:00.000Z',
      });
    let started = performance.now();
    const all = await registry.flush();
    const allMs = performance.now() - started;
    expect(all.files).toBe(256);
    registry.recordSessions(agents[42].id, 1);
    started = performance.now();
    const one = await registry.flush();
    const oneMs = performance.now() - started;
    process.stderr.write(
      `status flush, 10,000 agents: all ${all.bytes} bytes in ${Math.round(allMs)} ms; one agent ${one.bytes} bytes in ${oneMs.toFixed(1)} ms\n`,
    );
    expect(one.files).toBe(1);
    expect(one.bytes).toBeLessThan(all.bytes / 20);
    expect(await registry.flush()).toEqual({ files: 0, bytes: 0 });
    const rows = await listAgents(dir);
    expect(rows).toHaveLength(10_000);
    expect(rows[42].status).toMatchObject({ connected: true, applied: { 'gitops-project': { result: 'applied' } } });
    expect(rows[43].status?.connected).toBe(false);
  });

  it('reads the single status.json of an earlier version and replaces it with shards on the first write', async () => {
    const dir = await stateDir();
    const { record } = await createAgent(dir, 'agent1', 'p');
    const legacy = {
      version: 1,
      writtenAt: '',
      agents: {
        [record.id]: {
          connected: true,
          sessions: 1,
          applied: { p: { commit: 'b'.repeat(40), digest: 'd', result: 'applied', at: '' } },
          lastError: { at: '', problems: [{ code: 'X', message: 'old' }] },
        },
      },
    };
    await writeFile(path.join(dir, 'status.json'), JSON.stringify(legacy));
    expect((await listAgents(dir))[0].status?.applied.p.commit).toBe('b'.repeat(40));
    const registry = await Registry.open(dir);
    await registry.close();
    await expect(stat(path.join(dir, 'status.json'))).rejects.toThrow();
    const row = (await listAgents(dir))[0];
    expect(row.status).toMatchObject({ connected: false, applied: { p: { commit: 'b'.repeat(40) } } });
    expect(row.status).not.toHaveProperty('lastError');
  });

  it('keeps what an agent reports bounded', () => {
    const many = Array.from({ length: 100 }, () => ({ code: 'X', message: 'm'.repeat(10_000) }));
    const bounded = boundProblems(many);
    expect(bounded.length).toBe(20);
    expect(bounded[0].message.length).toBeLessThanOrEqual(1001);
  });
});

describe('agent create: config project and allowed projects', () => {
  it.each(['../../etc', 'http://169.254.169.254/latest', '', '   ', 'group/name.git', 'x'.repeat(300)])(
    'refuses --config-project %j and writes nothing',
    async (project) => {
      const dir = await stateDir();
      await expect(createAgent(dir, 'agent1', project)).rejects.toMatchObject({
        code: 'AGENT_BAD_PROJECT',
        kind: 'user',
      });
      await expect(readdir(dir)).rejects.toThrow();
    },
  );

  it('stores allowed projects, refuses a bad entry, and changes them later in one rewrite a running server sees', async () => {
    const dir = await stateDir();
    await expect(
      createAgent(dir, 'agent1', 'a/config', undefined, { allowProjects: ['tenant-b/', '../x'] }),
    ).rejects.toMatchObject({ code: 'AGENT_BAD_ALLOW_PROJECT' });
    const { record } = await createAgent(dir, 'agent1', 'a/config', undefined, {
      allowProjects: ['tenant-b/', 'c/one', 'tenant-b/'],
    });
    expect(record.allowProjects).toEqual(['tenant-b/', 'c/one']);
    const registry = await Registry.open(dir);
    registries.push(registry);
    const held = registry.get(record.id);
    const seen = new Promise<RegistryChange>((resolve) => registry.onChange(resolve));
    const updated = await updateAllowProjects(dir, 'agent1', { allow: ['d/'], disallow: ['c/one'] });
    expect(updated.allowProjects).toEqual(['tenant-b/', 'd/']);
    const change = await seen;
    expect(change).toMatchObject({
      added: [],
      revoked: [],
      changed: [{ id: record.id, allowProjects: ['tenant-b/', 'd/'] }],
    });
    expect(registry.get(record.id)).not.toBe(held);
    expect(registry.get(record.id)?.allowProjects).toEqual(['tenant-b/', 'd/']);
    await expect(updateAllowProjects(dir, 'agent1', { disallow: ['c/one'] })).rejects.toMatchObject({
      code: 'AGENT_NOT_ALLOWED',
    });
    await expect(updateAllowProjects(dir, 'nobody', { allow: ['x/'] })).rejects.toMatchObject({
      code: 'AGENT_NOT_FOUND',
    });
    await expect(updateAllowProjects(dir, 'agent1', { allow: ['bad//'] })).rejects.toMatchObject({
      code: 'AGENT_BAD_ALLOW_PROJECT',
    });
    const last = await updateAllowProjects(dir, 'agent1', { disallow: ['tenant-b/', 'd/'] });
    expect(last).not.toHaveProperty('allowProjects');
  });
});

describe('state dir records that fail validation', () => {
  const line = (r: unknown): string => JSON.stringify(r);

  it('skips a record with only an id (agents.json, with its line), and the server starts with the others', async () => {
    const dir = await stateDir();
    const { record } = await createAgent(dir, 'good', 'p');
    const file = path.join(dir, 'agents.json');
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace(`${line(record)}\n`, `${line({ id: 'f'.repeat(32) })},\n${line(record)}\n`));
    const report = await listAgentsReport(dir);
    expect(report.rows.map((r) => r.name)).toEqual(['good']);
    expect(report.warnings).toEqual([
      expect.stringMatching(new RegExp(`agents\\.json:2: agent record skipped: name: `)),
    ]);
    const registry = await Registry.open(dir);
    registries.push(registry);
    expect(registry.active().map((a) => a.name)).toEqual(['good']);
    expect(registry.health()).toEqual({ invalidRecords: 1, invalidStatus: 0 });
    expect(registry.lookupKey('f'.repeat(32))).toBeUndefined();
  });

  it('skips bad journal lines (not JSON, not a record, an unsafe project) and keeps reading the rest', async () => {
    const dir = await stateDir();
    await createAgent(dir, 'first', 'p');
    await createAgent(dir, 'second', 'p');
    const journal = path.join(dir, 'agents.journal');
    const good = (await readFile(journal, 'utf8')).trim();
    const bad = { ...JSON.parse(good), id: 'e'.repeat(32), name: 'evil', configProject: '../../etc' };
    await writeFile(journal, `garbage\n${line(bad)}\n[1]\n${good}\n`);
    const report = await listAgentsReport(dir);
    expect(report.rows.map((r) => r.name)).toEqual(['first', 'second']);
    expect(report.warnings).toEqual([
      expect.stringMatching(/agents\.journal:1: agent record skipped: not valid JSON/),
      expect.stringMatching(/agents\.journal:2: agent record skipped \(evil\): configProject: segment 1 must start/),
      expect.stringMatching(/agents\.journal:3: agent record skipped: .*expected object, received array/),
    ]);
    // A full rewrite keeps the broken JSON record for a person to repair (and drops the non-JSON line).
    await createAgent(dir, 'third', 'p');
    await revokeAgent(dir, 'first');
    const after = JSON.parse(await readFile(path.join(dir, 'agents.json'), 'utf8')) as { agents: { name: string }[] };
    expect(after.agents.map((a) => a.name)).toEqual(['first', 'second', 'third', 'evil']);
    expect((await listAgentsReport(dir)).warnings).toEqual([
      expect.stringMatching(/agents\.json:5: agent record skipped \(evil\)/),
    ]);
  });

  it('never lets a journal line undo the revoke of a record that fails validation', async () => {
    const dir = await stateDir();
    await createAgent(dir, 'keep', 'p');
    const { record } = await createAgent(dir, 'gone', 'p');
    await revokeAgent(dir, 'gone');
    const file = path.join(dir, 'agents.json');
    const text = await readFile(file, 'utf8');
    const revoked = (JSON.parse(text) as { agents: AgentRecord[] }).agents[1];
    await writeFile(file, text.replace(line(revoked), line({ ...revoked, createdAt: 'yesterday' })));
    await writeFile(path.join(dir, 'agents.journal'), `${line(record)}\n`);
    expect((await listAgents(dir)).map((a) => a.name)).toEqual(['keep']);
  });

  it('keeps a known agent whose record breaks while it runs, and revokes it when the broken record is revoked', async () => {
    const dir = await stateDir();
    const { record } = await createAgent(dir, 'agent1', 'p');
    await createAgent(dir, 'other', 'p');
    await revokeAgent(dir, 'other');
    const registry = await Registry.open(dir, { pollMs: 20 });
    registries.push(registry);
    const changes: RegistryChange[] = [];
    registry.onChange((c) => changes.push(c));
    const file = path.join(dir, 'agents.json');
    await writeFile(file, (await readFile(file, 'utf8')).replace(line(record), line({ ...record, publicKey: 'oops' })));
    await waitUntil(() => registry.health().invalidRecords === 1);
    expect(changes).toEqual([]);
    expect(registry.lookupKey(record.id)).toMatchObject({ revoked: false });
    await revokeAgent(dir, 'agent1');
    await waitUntil(() => changes.length === 1);
    expect(changes[0].revoked.map((a) => a.id)).toEqual([record.id]);
    expect(registry.lookupKey(record.id)).toMatchObject({ revoked: true });
  });

  it('treats a deleted or unparseable agents.json as unreadable: keeps every agent, revokes none, and recovers', async () => {
    const dir = await stateDir();
    const { record } = await createAgent(dir, 'agent1', 'p');
    const registry = await Registry.open(dir, { pollMs: 20 });
    registries.push(registry);
    const changes: RegistryChange[] = [];
    registry.onChange((c) => changes.push(c));
    registry.recordSessions(record.id, 1);
    await registry.flush();
    const file = path.join(dir, 'agents.json');
    const saved = await readFile(file, 'utf8');
    await rm(file);
    await waitUntil(() => registry.health().agentsFileProblem === 'missing');
    expect(registry.lookupKey(record.id)).toMatchObject({ revoked: false });
    // A command would replace the registry with nothing but its own agent: it refuses.
    await expect(createAgent(dir, 'late', 'p')).rejects.toMatchObject({
      code: 'STATE_AGENTS_FILE_MISSING',
      message: expect.stringMatching(/restore agents\.json from a backup/),
    });
    await expect(revokeAgent(dir, 'agent1')).rejects.toMatchObject({ code: 'STATE_AGENTS_FILE_MISSING' });
    await writeFile(file, '{"version":1,"agents":[');
    await waitUntil(() => /not valid JSON/.test(registry.health().agentsFileProblem ?? ''));
    await expect(revokeAgent(dir, 'agent1')).rejects.toMatchObject({ code: 'STATE_CORRUPT' });
    await expect(createAgent(dir, 'more', 'p')).rejects.toMatchObject({ code: 'STATE_CORRUPT' });
    expect(changes.flatMap((c) => c.revoked)).toEqual([]);
    await writeFile(file, saved);
    await waitUntil(() => registry.health().agentsFileProblem === undefined);
    expect(registry.lookupKey(record.id)).toMatchObject({ revoked: false });
    expect(changes.flatMap((c) => c.revoked)).toEqual([]);
  });

  it('starts from the journal alone when agents.json is missing, as before', async () => {
    const dir = await stateDir();
    await createAgent(dir, 'first', 'p');
    await createAgent(dir, 'second', 'p');
    await rm(path.join(dir, 'agents.json'));
    const registry = await Registry.open(dir);
    registries.push(registry);
    expect(registry.active().map((a) => a.name)).toEqual(['second']);
    expect(registry.health().agentsFileProblem).toBeUndefined();
  });

  it('skips status entries that fail the schema or its bounds, and reports them', async () => {
    const dir = await stateDir();
    const { record } = await createAgent(dir, 'agent1', 'p');
    const { record: other } = await createAgent(dir, 'agent2', 'p');
    await mkdir(path.join(dir, 'status'), { recursive: true });
    const huge = {
      connected: false,
      sessions: 0,
      applied: { p: { commit: 'c'.repeat(5000), digest: 'd', result: 'applied', at: '' } },
    };
    await writeFile(
      path.join(dir, 'status', `${statusShardOf(record.id)}.json`),
      JSON.stringify({ version: 1, writtenAt: '', agents: { [record.id]: huge } }),
    );
    // A broken shard of its own: never the one just written for agent1 (ids are random, so either may hash to 00).
    const used = new Set([statusShardOf(record.id), statusShardOf(other.id)]);
    const broken = ['00', '01', '02'].find((s) => !used.has(s));
    await writeFile(path.join(dir, 'status', `${broken}.json`), '{"version":1,');
    const report = await listAgentsReport(dir);
    expect(report.rows.every((r) => r.status === undefined)).toBe(true);
    expect(report.warnings).toEqual(
      expect.arrayContaining([
        expect.stringMatching(new RegExp(`status skipped: status of agent ${record.id}: applied\\.p\\.commit: `)),
        expect.stringMatching(/status skipped: not valid JSON/),
      ]),
    );
    const registry = await Registry.open(dir);
    registries.push(registry);
    expect(registry.health().invalidStatus).toBe(2);
  });
});

async function waitUntil(check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('Registry status writes', () => {
  it('records each fact with its bounds, clears per project, and creates no status only to clear one', async () => {
    const dir = await stateDir();
    const { record } = await createAgent(dir, 'agent1', 'p');
    const { record: quiet } = await createAgent(dir, 'quiet', 'p');
    const registry = await Registry.open(dir, { statusDebounceMs: 60_000 });
    registries.push(registry);
    const at = '2026-01-01T00:00:00.000Z';

    registry.recordHello(record.id, 'v'.repeat(100), at);
    registry.recordSessions(record.id, 2, at);
    expect(registry.status(record.id)).toMatchObject({
      connected: true,
      sessions: 2,
      lastSeen: at,
      agentVersion: 'v'.repeat(64),
    });
    registry.recordSessions(record.id, 0, at);
    expect(registry.status(record.id)).toMatchObject({ connected: false, sessions: 0 });

    const problem = { code: 'APPLY_FAILED', message: 'x'.repeat(5000), object: 'ConfigMap/default/a' };
    registry.recordProjectProblems(record.id, 'p1', at, {
      commit: 'c1',
      problems: Array.from({ length: 50 }, () => problem),
    });
    registry.recordProjectProblems(record.id, 'p2', at, { commit: 'c2', problems: [problem] });
    const errors = registry.status(record.id).projectErrors!;
    expect(errors.p1.problems).toHaveLength(20);
    expect(errors.p1.problems[0].message.length).toBeLessThanOrEqual(1001);
    registry.recordProjectProblems(record.id, 'p1', at);
    expect(Object.keys(registry.status(record.id).projectErrors!)).toEqual(['p2']);
    registry.recordProjectProblems(record.id, 'p2', at);
    expect(registry.status(record.id).projectErrors).toBeUndefined();

    registry.recordDrift(record.id, { project: 'p1', object: 'o'.repeat(500), action: 'reverted', at }, at);
    registry.recordDrift(record.id, { project: 'p1', object: 'o', action: 'reverted', at }, at);
    expect(registry.status(record.id)).toMatchObject({ driftCount: 2, lastDrift: { object: 'o' } });

    registry.setConfigProblems(record.id, [{ code: 'CONFIG_YAML_INVALID', message: 'bad' }]);
    registry.setSourceProblem(record.id, 'p1', { code: 'GIT_UNREACHABLE', message: 'down' });
    registry.setSourceProblem(record.id, 'p2', { code: 'GIT_UNREACHABLE', message: 'down' });
    expect(registry.status(record.id)).toMatchObject({
      configProblems: [{ code: 'CONFIG_YAML_INVALID' }],
      sourceProblems: { p1: {}, p2: {} },
    });
    registry.clearConfigProblems(record.id);
    expect(registry.clearSourceProblem(record.id, 'p1')).toBe(true);
    expect(registry.clearSourceProblem(record.id, 'p1')).toBe(false);
    expect(registry.status(record.id).configProblems).toBeUndefined();
    expect(Object.keys(registry.status(record.id).sourceProblems!)).toEqual(['p2']);
    registry.clearSourceProblem(record.id, 'p2');
    expect(registry.status(record.id).sourceProblems).toBeUndefined();

    // Clearing what an agent never had writes nothing for it.
    registry.clearConfigProblems(quiet.id);
    expect(registry.clearSourceProblem(quiet.id, 'p1')).toBe(false);
    await registry.flush();
    expect((await listAgents(dir)).find((r) => r.id === quiet.id)?.status).toBeUndefined();
  });
});

describe('Registry health (protocol 2)', () => {
  const sha = (c: string): string => c.repeat(40);
  const applied = (commit: string) => ({ commit, digest: 'd', result: 'applied' as const, at: '2026-01-01T00:00:00Z' });
  const health = (over: Partial<HealthMessage> = {}): HealthMessage => ({
    type: 'health',
    project: 'p1',
    commit: sha('a'),
    digest: 'd',
    result: 'degraded',
    objects: [
      { id: 'ConfigMap/default/a', state: 'current' },
      { id: 'Deployment/default/web', state: 'in_progress', reason: 'Progressing', message: '1/3 replicas available' },
      { id: 'Deployment/default/api', state: 'failed', reason: 'CrashLoopBackOff', message: 'x'.repeat(5000) },
      { id: 'ConfigMap/default/old', state: 'not_found', pruned: true },
    ],
    waitedMs: 4200,
    ...over,
  });

  it('keeps the latest health per project, failed first and bounded, ignores an older commit, and shows it to agent list', async () => {
    const dir = await stateDir();
    const { record } = await createAgent(dir, 'agent1', 'p');
    const registry = await Registry.open(dir, { statusDebounceMs: 60_000 });
    registries.push(registry);
    const at = '2026-01-01T00:00:01.000Z';
    registry.recordApplied(record.id, 'p1', applied(sha('a')));

    expect(registry.recordHealth(record.id, health({ result: 'progressing' }), at)).toMatchObject({ kind: 'changed' });
    expect(registry.recordHealth(record.id, health({ result: 'progressing' }), at)).toMatchObject({ kind: 'same' });
    const change = registry.recordHealth(record.id, health(), at);
    expect(change.kind).toBe('changed');
    const stored = registry.status(record.id).health!.p1;
    expect(stored).toMatchObject({
      commit: sha('a'),
      result: 'degraded',
      total: 4,
      counts: { current: 1, in_progress: 1, failed: 1, not_found: 1 },
      notCurrent: 2,
      waitedMs: 4200,
      at,
    });
    // Failed first; current objects and gone pruned ones are not listed; long messages clipped.
    expect(stored.objects.map((o) => [o.id, o.state])).toEqual([
      ['Deployment/default/api', 'failed'],
      ['Deployment/default/web', 'in_progress'],
    ]);
    expect(stored.objects[0].message!.length).toBeLessThanOrEqual(1001);

    // An older commit's wait ending late changes nothing.
    expect(registry.recordHealth(record.id, health({ commit: sha('b'), result: 'healthy' }), at)).toEqual({
      kind: 'stale',
      statusCommit: sha('a'),
    });
    expect(registry.status(record.id).health!.p1.result).toBe('degraded');

    // 10,000 failing objects: at most 20 kept.
    const many = Array.from({ length: 10_000 }, (_, i) => ({ id: `Pod/ns/p${i}`, state: 'failed' as const }));
    registry.recordHealth(record.id, health({ project: 'p2', objects: many }), at);
    expect(registry.status(record.id).health!.p2).toMatchObject({ total: 10_000, notCurrent: 10_000 });
    expect(registry.status(record.id).health!.p2.objects).toHaveLength(20);

    await registry.flush();
    const row = (await listAgents(dir)).find((r) => r.id === record.id);
    expect(row?.status?.health?.p1).toMatchObject({ result: 'degraded', notCurrent: 2 });

    // A status for a new commit drops the old commit's health; the new commit's is kept again.
    registry.recordApplied(record.id, 'p1', applied(sha('c')));
    expect(registry.status(record.id).health!.p1).toBeUndefined();
    registry.recordHealth(record.id, health({ commit: sha('c'), result: 'healthy', objects: [] }), at);
    expect(registry.status(record.id).health!.p1).toMatchObject({ result: 'healthy', total: 0, notCurrent: 0 });
  });

  it('takes the totals of a cut report, and counts (agent, project) pairs per result for the metrics gauge', async () => {
    const dir = await stateDir();
    const { record: a } = await createAgent(dir, 'agent-a', 'p');
    const { record: b } = await createAgent(dir, 'agent-b', 'p');
    const registry = await Registry.open(dir, { statusDebounceMs: 60_000 });
    registries.push(registry);
    const at = '2026-01-01T00:00:01.000Z';
    const cut = health({
      result: 'timed_out',
      objects: [{ id: 'Deployment/default/web', state: 'in_progress' }],
      truncated: { objects: 12_000, counts: { current: 11_000, in_progress: 1000 } },
    });
    registry.recordHealth(a.id, cut, at);
    expect(registry.status(a.id).health!.p1).toMatchObject({ total: 12_000, notCurrent: 1000 });
    registry.recordHealth(a.id, health({ project: 'p2', result: 'healthy', objects: [] }), at);
    registry.recordHealth(b.id, health({ result: 'healthy', objects: [] }), at);
    expect(registry.healthResults()).toEqual({ progressing: 0, healthy: 2, degraded: 0, timed_out: 1 });

    const metrics = createServerMetrics();
    registerRegistryHealth(metrics, registry);
    const text = await metrics.registry.metrics();
    expect(text).toContain('gitops_server_agent_health{result="healthy"} 2');
    expect(text).toContain('gitops_server_agent_health{result="timed_out"} 1');
    expect(text).not.toMatch(/gitops_server_agent_health\{[^}]*agent/);
    await revokeAgent(dir, 'agent-b');
    await waitUntil(() => registry.get(b.id)?.revokedAt !== undefined);
    expect(registry.healthResults().healthy).toBe(1);
  });
});
