import { describe, expect, it } from '@jest/globals';
import { Writable } from 'node:stream';
import { createLogger } from '../common/logger.js';
import type { StatusMessage } from '../protocol/messages.js';
import type { ChangeSet } from './reconcile/types.js';
import type { SyncUnit } from './reconcile/types.js';
import { SyncLoop, unitName } from './runner.js';
import type { DesiredState } from './state.js';

const config: DesiredState['config'] = {
  id: 'gitops-project',
  ref: {},
  defaultNamespace: 'default',
  paths: [{ glob: '/**/*.yaml' }],
  reconcileTimeoutMs: 3_600_000,
  dryRunStrategy: 'none',
  prune: true,
  pruneTimeoutMs: 3_600_000,
  prunePropagationPolicy: 'foreground',
  inventoryPolicy: 'must_match',
};
const desired = (c: string): DesiredState => ({
  project: 'gitops-project',
  commit: c.repeat(40),
  digest: c,
  config,
  files: [{ path: 'manifest.yaml', content: c }],
});

function capture(): { stream: Writable; lines: () => string[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(c: Buffer, _e, done) {
      chunks.push(c.toString());
      done();
    },
  });
  return { stream, lines: () => chunks.join('').split('\n').filter(Boolean) };
}

/** An engine double that applies one object per file, slowly, and stops when aborted. */
function slowEngine(delayMs: number) {
  const calls: string[] = [];
  const completed: string[] = [];
  return {
    calls,
    completed,
    async sync(unit: SyncUnit, { signal }: { signal?: AbortSignal } = {}): Promise<ChangeSet> {
      calls.push(unit.commit!.slice(0, 1));
      await new Promise((r) => setTimeout(r, delayMs));
      signal?.throwIfAborted();
      completed.push(unit.commit!.slice(0, 1));
      return {
        unit: unit.name,
        commit: unit.commit,
        changes: [
          { id: 'Deployment/default/nginx', action: 'configured' },
          { id: 'Service/default/nginx', action: 'unchanged' },
        ],
        errors: [],
        durationMs: 12,
        dryRun: false,
      };
    },
  };
}

describe('SyncLoop', () => {
  it('applies a commit, reports its status and logs the sha with each object action', async () => {
    const out = capture();
    const statuses: StatusMessage[] = [];
    const loop = new SyncLoop({
      engine: slowEngine(1),
      unitName: (p) => unitName('0123456789abcdef', p),
      logger: createLogger({ destination: out.stream }),
      report: (s) => statuses.push(s),
    });
    loop.setActive(true);
    loop.setDesired(desired('a'));
    await loop.idle();
    expect(statuses).toEqual([
      expect.objectContaining({
        commit: 'a'.repeat(40),
        result: 'applied',
        changes: [
          { id: 'Deployment/default/nginx', action: 'configured' },
          { id: 'Service/default/nginx', action: 'unchanged' },
        ],
      }),
    ]);
    const line = out.lines().find((l) => l.includes('"msg":"applied"'))!;
    expect(line).toContain('a'.repeat(40));
    expect(line).toContain('Deployment/default/nginx configured');
    expect(loop.applied()).toEqual({ 'gitops-project': { commit: 'a'.repeat(40), digest: 'a' } });
  });

  it('lets a newer commit supersede an apply in flight and reports only the newest', async () => {
    const engine = slowEngine(30);
    const statuses: StatusMessage[] = [];
    const loop = new SyncLoop({
      engine,
      unitName: (p) => p,
      logger: createLogger({ level: 'silent' }),
      report: (s) => statuses.push(s),
    });
    loop.setActive(true);
    loop.setDesired(desired('a'));
    await new Promise((r) => setTimeout(r, 5));
    loop.setDesired(desired('b'));
    loop.setDesired(desired('c'));
    await loop.idle();
    expect(engine.calls).toEqual(['a', 'c']);
    expect(engine.completed).toEqual(['c']);
    expect(statuses.map((s) => s.commit[0])).toEqual(['c']);
  });

  it('applies nothing on a standby replica and everything once it leads', async () => {
    const engine = slowEngine(1);
    const loop = new SyncLoop({
      engine,
      unitName: (p) => p,
      logger: createLogger({ level: 'silent' }),
      report: () => undefined,
    });
    loop.setDesired(desired('a'));
    await loop.idle();
    expect(engine.calls).toEqual([]);
    loop.setActive(true);
    await loop.idle();
    expect(engine.calls).toEqual(['a']);
  });

  it('reports a failed apply with the reason and retries it', async () => {
    let attempts = 0;
    const statuses: StatusMessage[] = [];
    const engine = {
      async sync(unit: SyncUnit): Promise<ChangeSet> {
        if (attempts++ === 0) throw new Error('connect ECONNREFUSED 127.0.0.1:6443');
        return { unit: unit.name, commit: unit.commit, changes: [], errors: [], durationMs: 1, dryRun: false };
      },
    };
    const loop = new SyncLoop({
      engine,
      unitName: (p) => p,
      logger: createLogger({ level: 'silent' }),
      report: (s) => statuses.push(s),
      retry: { baseMs: 10, capMs: 10, minMs: 10 },
    });
    loop.setActive(true);
    loop.setDesired(desired('a'));
    await loop.idle();
    await new Promise((r) => setTimeout(r, 30));
    await loop.idle();
    expect(statuses.map((s) => s.result)).toEqual(['failed', 'applied']);
    expect(statuses[0].errors[0].message).toContain('ECONNREFUSED');
    await loop.close();
  });

  it('logs why an apply failed when only objects failed (no unit error), and a thrown error with its cause', async () => {
    const out = capture();
    let attempts = 0;
    const eacces = "EACCES: permission denied, mkdir '/var/lib/gitops-agent/engine/openapi'";
    const engine = {
      async sync(unit: SyncUnit): Promise<ChangeSet> {
        if (attempts++ === 1)
          throw new Error('cannot read the OpenAPI document', {
            cause: Object.assign(new Error(eacces), { code: 'EACCES' }),
          });
        return {
          unit: unit.name,
          commit: unit.commit,
          errors: [],
          durationMs: 3,
          dryRun: false,
          changes: [
            {
              id: 'Deployment/default/nginx',
              action: 'failed',
              reason: `Deployment/default/nginx: ${eacces}`,
              error: {
                code: 'APPLY_FAILED',
                message: `Deployment/default/nginx: ${eacces}`,
                object: 'Deployment/default/nginx',
              },
            },
            { id: 'Service/default/nginx', action: 'failed', reason: `Service/default/nginx: ${eacces}` },
          ],
        };
      },
    };
    const loop = new SyncLoop({
      engine,
      unitName: (p) => p,
      logger: createLogger({ destination: out.stream }),
      report: () => undefined,
      retry: { baseMs: 10, capMs: 10, minMs: 10 },
    });
    loop.setActive(true);
    loop.setDesired(desired('a'));
    await loop.idle();
    await new Promise((r) => setTimeout(r, 30));
    await loop.idle();
    await loop.close();
    const failed = out
      .lines()
      .filter((l) => l.includes('"msg":"apply failed"'))
      .map((l) => JSON.parse(l) as { cause: string; errors: Array<{ message: string; object?: string }> });
    expect(failed.length).toBeGreaterThanOrEqual(2);
    expect(failed[0].cause).toContain('EACCES');
    expect(failed[0].errors.map((e) => e.message)).toEqual([
      `Deployment/default/nginx: ${eacces}`,
      `Service/default/nginx: ${eacces}`,
    ]);
    expect(failed[1].cause).toBe(`cannot read the OpenAPI document: ${eacces}`);
    expect(failed[1].errors).toEqual([{ code: 'APPLY_ERROR', message: `cannot read the OpenAPI document: ${eacces}` }]);
  });

  it('names inventories per agent and project within DNS limits', () => {
    const name = unitName('0123456789abcdef0123456789abcdef', 'Group/Sub Group/My_Project');
    expect(name).toMatch(/^gitops-01234567-group-sub-group-my-project-[0-9a-f]{8}$/);
    expect(unitName('0123456789abcdef', 'a'.repeat(300)).length).toBeLessThanOrEqual(63);
    expect(unitName('01234567', 'a/b')).not.toBe(unitName('01234567', 'a-b'));
  });
});
