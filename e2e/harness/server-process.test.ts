/**
 * The tenant-server harness itself: a real server process that agents reach, that tells the
 * next commit after a webhook, and whose health and memory a test can read.
 */
import { describe, expect, it } from '@jest/globals';
import { configMapManifest, TENANT_MANIFEST_PROJECT, useTenantServer } from './server-process.js';

const tenant = useTenantServer({ agents: [{ name: 'agent1' }, { name: 'agent2' }] });

describe('tenant server harness', () => {
  it('runs a real server process that sends each agent the current and the next commit', async () => {
    const ts = tenant();
    const a1 = await ts.connect('agent1');
    const first = await a1.next('desired');
    expect(first.files[0].content).toContain('tenant');

    const sha = await ts.commit(TENANT_MANIFEST_PROJECT, { 'manifest.yaml': configMapManifest('tenant', 'two') });
    expect((await a1.next('desired')).commit).toBe(sha);
    const a2 = await ts.connect('agent2');
    expect((await a2.next('desired')).commit).toBe(sha);
  });

  it('reads health, memory, logs and agent list of the process', async () => {
    const ts = tenant();
    expect(ts.alive()).toBe(true);
    const probe = ts.watchHealthz(10);
    expect((await ts.healthz()).status).toBe(200);
    const { count, failures } = await probe.stop();
    expect(count).toBeGreaterThan(0);
    expect(failures).toBe(0);
    const mem = await ts.memory();
    expect(mem.hwmMiB).toBeGreaterThanOrEqual(mem.rssMiB);
    expect(mem.rssMiB).toBeGreaterThan(10);
    expect((await ts.logs()).some((r) => r.msg === 'server listening')).toBe(true);
    expect((await ts.agentList()).map((r) => r.name).sort()).toEqual(['agent1', 'agent2']);
  });
});
