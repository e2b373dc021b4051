import { afterEach, describe, expect, it } from '@jest/globals';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseToken } from '../protocol/token.js';
import { Registry, boundProblems, createAgent, createAgents, listAgents, revokeAgent, type RegistryChange } from './registry.js';

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
    expect(JSON.parse(text).agents[0]).toMatchObject({ name: 'agent1', configProject: 'group/kubernetes-agent', publicKey: record.publicKey });
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
    const batch = await createAgents(dir, Array.from({ length: 500 }, (_, i) => ({ name: `fleet-${i}`, configProject: 'group/config' })));
    expect(batch.map((b) => b.record.name)).toEqual(Array.from({ length: 500 }, (_, i) => `fleet-${i}`));
    expect(new Set(batch.map((b) => b.token)).size).toBe(500);
    expect(parseToken(batch[499].token).agentId).toBe(batch[499].record.id);
    await expect(createAgents(dir, [{ name: 'fresh', configProject: 'p' }, { name: 'taken', configProject: 'p' }])).rejects.toMatchObject({ code: 'AGENT_EXISTS' });
    await expect(createAgents(dir, [{ name: 'twice', configProject: 'p' }, { name: 'twice', configProject: 'p' }])).rejects.toMatchObject({ code: 'AGENT_EXISTS' });
    const names = (await listAgents(dir)).map((a) => a.name);
    expect(names).toHaveLength(501);
    expect(names).not.toContain('fresh');
  });

  it('appends creates to a journal instead of rewriting agents.json, and folds it in on revoke', async () => {
    const dir = await stateDir();
    await createAgent(dir, 'first', 'p');
    const before = await readFile(path.join(dir, 'agents.json'), 'utf8');
    const { record } = await createAgent(dir, 'second', 'p');
    await createAgents(dir, [{ name: 'third', configProject: 'p' }, { name: 'fourth', configProject: 'p' }]);
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
    expect((await listAgents(dir)).filter((a) => a.name === 'second').map((a) => Boolean(a.revokedAt))).toEqual([true, false]);
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
    await createAgents(dir, Array.from({ length: 1000 }, (_, i) => ({ name: `a-${i}`, configProject: 'p' })));
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
    registry.updateStatus(record.id, (s) => { s.connected = true; s.sessions = 1; s.lastSeen = new Date().toISOString(); });
    registry.recordApplied(record.id, 'gitops-project', { commit: 'a'.repeat(40), digest: 'd', result: 'applied', at: new Date().toISOString() });
    await registry.close();
    const rows = await listAgents(dir);
    expect(rows[0].status).toMatchObject({ connected: true, applied: { 'gitops-project': { commit: 'a'.repeat(40) } } });
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
    const agents = Array.from({ length: 10_000 }, (_, i) => ({ id: i.toString(16).padStart(32, '0'), name: `agent${i}`, configProject: 'p', publicKey: 'x', createdAt: '2026-01-01T00:00:00.000Z' }));
    await writeFile(path.join(dir, 'agents.json'), JSON.stringify({ version: 1, agents }));
    const registry = await Registry.open(dir, { statusDebounceMs: 60_000 });
    registries.push(registry);
    for (const a of agents) registry.recordApplied(a.id, 'gitops-project', { commit: 'a'.repeat(40), digest: 'sha256:' + 'd'.repeat(64), result: 'applied', at: '2026-01-01T00:00:00.000Z' });
    let started = performance.now();
    const all = await registry.flush();
    const allMs = performance.now() - started;
    expect(all.files).toBe(256);
    registry.updateStatus(agents[42].id, (s) => { s.connected = true; s.sessions = 1; });
    started = performance.now();
    const one = await registry.flush();
    const oneMs = performance.now() - started;
    process.stderr.write(`status flush, 10,000 agents: all ${all.bytes} bytes in ${Math.round(allMs)} ms; one agent ${one.bytes} bytes in ${oneMs.toFixed(1)} ms\n`);
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
    const legacy = { version: 1, writtenAt: '', agents: { [record.id]: { connected: true, sessions: 1, applied: { p: { commit: 'b'.repeat(40), digest: 'd', result: 'applied', at: '' } }, lastError: { at: '', problems: [{ code: 'X', message: 'old' }] } } } };
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
