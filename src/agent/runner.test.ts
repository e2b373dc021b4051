import { describe, expect, it } from '@jest/globals';
import { Writable } from 'node:stream';
import { createLogger } from '../common/logger.js';
import type { HealthMessage, StatusMessage } from '../protocol/messages.js';
import type { HealthReport, ObjectHealthEntry } from './health/types.js';
import { AgentMetrics } from './metrics.js';
import type { ChangeSet } from './reconcile/types.js';
import type { SyncUnit } from './reconcile/types.js';
import type { HealthFollower } from './reconciler.js';
import { HEALTH_FRAME_INTERVAL_MS, healthFrameOf, SyncLoop, unitName, type ObjectFailure } from './runner.js';
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
      report: (s) => {
        if (s.type === 'status') statuses.push(s);
      },
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
      report: (s) => {
        if (s.type === 'status') statuses.push(s);
      },
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
      report: (s) => {
        if (s.type === 'status') statuses.push(s);
      },
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

const web = (state: ObjectHealthEntry['state'], reason: string, message = ''): ObjectHealthEntry => ({
  id: 'Deployment/default/web',
  state,
  reason,
  message,
});
const cm: ObjectHealthEntry = { id: 'ConfigMap/default/settings', state: 'current', reason: 'Exists', message: '' };

interface PendingWait {
  unit: string;
  timeoutMs: number;
  pruneTimeoutMs: number;
  signal?: AbortSignal;
  resolve: (report: HealthReport) => void;
}

/**
 * A HealthFollower as the engine is one: a sync makes the unit's report `progressing` at its
 * commit; the test then says what the objects do (`change`) and when a wait ends (`settle`).
 */
class HealthDouble implements HealthFollower {
  readonly waits: PendingWait[] = [];
  readonly forgotten: string[] = [];
  private readonly reports = new Map<string, HealthReport>();
  private readonly listeners = new Set<(r: HealthReport) => void>();

  synced(unit: SyncUnit): void {
    this.reports.set(unit.name, { unit: unit.name, commit: unit.commit, result: 'progressing', objects: [] });
  }

  waitHealth(unit: string, options: Omit<PendingWait, 'unit' | 'resolve'>): Promise<HealthReport> {
    const now = (): HealthReport => this.reports.get(unit) ?? { unit, result: 'progressing', objects: [] };
    if (options.timeoutMs === 0) return Promise.resolve(now());
    return new Promise((resolve) => {
      this.waits.push({ unit, ...options, resolve });
      options.signal?.addEventListener('abort', () => resolve({ ...now(), result: 'progressing' }), { once: true });
    });
  }

  health(unit: string): HealthReport | undefined {
    return this.reports.get(unit);
  }

  onHealthChange(listener: (r: HealthReport) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  forget(unit: string): void {
    this.forgotten.push(unit);
    this.reports.delete(unit);
  }

  /** The objects of the unit's current commit changed (the tracker's notification). */
  change(unit: string, result: HealthReport['result'], objects: ObjectHealthEntry[], waitedMs?: number): HealthReport {
    const report: HealthReport = {
      ...this.reports.get(unit)!,
      result,
      objects,
      ...(waitedMs !== undefined ? { waitedMs } : {}),
    };
    this.reports.set(unit, report);
    for (const l of this.listeners) l(report);
    return report;
  }

  /** The pending wait of a unit comes to a result. */
  settle(unit: string, result: HealthReport['result'], objects: ObjectHealthEntry[], waitedMs: number): void {
    const report = this.change(unit, result, objects, waitedMs);
    for (const w of this.waits.filter((x) => x.unit === unit && !x.signal?.aborted)) w.resolve(report);
  }
}

/** An engine whose syncs succeed after `delayMs` and tell the health double what they applied. */
function healthEngine(health: HealthDouble, delayMs = 1) {
  const calls: string[] = [];
  return {
    calls,
    async sync(unit: SyncUnit, { signal }: { signal?: AbortSignal } = {}): Promise<ChangeSet> {
      calls.push(unit.commit!.slice(0, 1));
      await new Promise((r) => setTimeout(r, delayMs));
      signal?.throwIfAborted();
      health.synced(unit);
      return {
        unit: unit.name,
        commit: unit.commit,
        changes: [{ id: 'Deployment/default/web', action: 'configured' }],
        errors: [],
        durationMs: 2,
        dryRun: false,
      };
    },
  };
}

interface LogLine {
  msg: string;
  level: string;
  commit?: string;
  waitedMs?: number;
  notCurrent?: string[];
}

function healthLoop(options: { delayMs?: number; config?: Partial<DesiredState['config']> } = {}) {
  const health = new HealthDouble();
  const engine = healthEngine(health, options.delayMs);
  const out = capture();
  const sent: Array<StatusMessage | HealthMessage> = [];
  const failures: ObjectFailure[] = [];
  const metrics = new AgentMetrics({ defaultMetrics: false });
  const loop = new SyncLoop({
    engine,
    health,
    unitName: (p) => p,
    logger: createLogger({ destination: out.stream }),
    metrics,
    report: (m) => sent.push(m),
    onObjectFailed: (f) => failures.push(f),
    retry: { baseMs: 5, capMs: 5, minMs: 5 },
  });
  loop.setActive(true);
  const want = (c: string): DesiredState => ({ ...desired(c), config: { ...config, ...options.config } });
  const logs = (): LogLine[] =>
    out
      .lines()
      .map((l) => JSON.parse(l) as LogLine)
      .filter((l) => l.msg.startsWith('commit '));
  const allLogs = (): string[] => out.lines().map((l) => (JSON.parse(l) as LogLine).msg);
  return { health, engine, loop, sent, failures, metrics, want, logs, allLogs, unit: 'gitops-project' };
}

/** Polls `done` every 10 ms until it holds (unit tests of timers that are not faked). */
async function waitUntil(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`not done within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('SyncLoop waiting for health', () => {
  it('waits for health after an apply, bounded by reconcile_timeout, and reports it after the status', async () => {
    const t = healthLoop({ config: { reconcileTimeoutMs: 90_000, pruneTimeoutMs: 30_000 } });
    t.loop.setDesired(t.want('a'));
    await t.loop.idle();
    expect(t.health.waits).toEqual([
      expect.objectContaining({ unit: t.unit, timeoutMs: 90_000, pruneTimeoutMs: 30_000 }),
    ]);
    expect(t.loop.isWaiting('gitops-project')).toBe(true);
    // Waiting is not being busy: drift correction goes on meanwhile.
    expect(t.loop.isBusy(t.unit)).toBe(false);
    t.health.change(t.unit, 'progressing', [cm, web('in_progress', 'NotAvailable', '0/1 replicas available')]);
    t.health.settle(t.unit, 'healthy', [cm, web('current', 'Available')], 1_234);
    await t.loop.settled();
    expect(t.loop.isWaiting('gitops-project')).toBe(false);
    expect(t.sent.map((m) => `${m.type} ${m.result}`)).toEqual([
      'status applied',
      'health progressing', // as it stood right after the apply
      // The object's change within the same second is held back (HEALTH_FRAME_INTERVAL_MS); the
      // result's change is sent at once and makes it moot.
      'health healthy', // the change and the wait's result are one report: sent once
    ]);
    expect(t.sent.at(-1)).toEqual(
      expect.objectContaining({ type: 'health', commit: 'a'.repeat(40), digest: 'a', waitedMs: 1_234 }),
    );
    expect(t.logs()).toEqual([
      expect.objectContaining({ msg: 'commit healthy', commit: 'a'.repeat(40), waitedMs: 1_234 }),
    ]);
    // "applied" keeps meaning the apply succeeded, whatever the health.
    expect(t.loop.applied()).toEqual({ 'gitops-project': { commit: 'a'.repeat(40), digest: 'a' } });
    const text = await t.metrics.registry.metrics();
    expect(text).toContain('gitops_agent_commit_health{project="gitops-project",result="healthy"} 1');
    expect(text).toContain('gitops_agent_commit_health{project="gitops-project",result="progressing"} 0');
    expect(text).toContain('gitops_agent_objects{project="gitops-project",health="current"} 2');
    expect(text).toContain('gitops_agent_time_to_healthy_seconds_count{project="gitops-project"} 1');
    await t.loop.close();
  });

  it('sends a burst of changes with the same result at most once a second, the newest last', async () => {
    const t = healthLoop({ config: { reconcileTimeoutMs: 90_000 } });
    t.loop.setDesired(t.want('a'));
    await t.loop.idle();
    const t0 = Date.now();
    for (let ready = 0; ready < 5; ready++)
      t.health.change(t.unit, 'progressing', [cm, web('in_progress', 'NotAvailable', `${ready}/5 replicas available`)]);
    const frames = (): HealthMessage[] => t.sent.filter((m): m is HealthMessage => m.type === 'health');
    expect(frames()).toHaveLength(1); // as it stood right after the apply
    await waitUntil(() => frames().length === 2, 3_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(HEALTH_FRAME_INTERVAL_MS - 50);
    expect(frames()[1].objects.find((o) => o.id.startsWith('Deployment'))?.message).toBe('4/5 replicas available');
    t.health.settle(t.unit, 'healthy', [cm, web('current', 'Available')], 2_000);
    await t.loop.settled();
    expect(frames().map((f) => f.result)).toEqual(['progressing', 'progressing', 'healthy']);
    await t.loop.close();
  });

  it('stops following the health of a project the configuration no longer names', async () => {
    const t = healthLoop();
    t.loop.setDesired(t.want('a'));
    await t.loop.idle();
    expect(t.loop.isWaiting('gitops-project')).toBe(true);
    t.loop.remove('gitops-project');
    expect(t.health.forgotten).toEqual([t.unit]);
    expect(t.loop.isWaiting('gitops-project')).toBe(false);
    // A late change of the forgotten unit reaches nobody.
    const before = t.sent.length;
    t.health.change(t.unit, 'degraded', [web('failed', 'CrashLoopBackOff', 'back-off')]);
    expect(t.sent).toHaveLength(before);
    await t.loop.close();
  });

  it("lets a newer commit supersede a wait at once and drops the older commit's health", async () => {
    const t = healthLoop();
    t.loop.setDesired(t.want('a'));
    await t.loop.idle();
    const first = t.health.waits[0];
    t.loop.setDesired(t.want('b'));
    expect(first.signal?.aborted).toBe(true);
    // Health of a's objects arriving while b is applied: a is no longer the commit in force.
    t.health.change(t.unit, 'degraded', [web('failed', 'ImagePullBackOff', 'Back-off pulling image')]);
    await t.loop.idle();
    expect(t.engine.calls).toEqual(['a', 'b']);
    expect(t.health.waits.map((w) => w.signal?.aborted)).toEqual([true, false]);
    expect(t.sent.filter((m) => m.type === 'health' && m.result === 'degraded')).toEqual([]);
    expect(t.failures).toEqual([]);
    t.health.settle(t.unit, 'healthy', [web('current', 'Available')], 50);
    await t.loop.settled();
    expect(t.logs().map((l) => `${l.msg} ${l.commit?.[0]}`)).toEqual(['commit healthy b']);
    await t.loop.close();
  });

  it("keeps the same commit's wait when its desired state comes again (a reconnect)", async () => {
    const t = healthLoop();
    t.loop.setDesired(t.want('a'));
    await t.loop.idle();
    t.loop.setDesired(t.want('a'));
    await t.loop.idle();
    expect(t.engine.calls).toEqual(['a']);
    expect(t.health.waits.map((w) => w.signal?.aborted)).toEqual([false]);
    await t.loop.close();
  });

  it('leaves drift correction free and skips the periodic re-sync while it waits', async () => {
    const t = healthLoop();
    t.loop.setDesired(t.want('a'));
    await t.loop.idle();
    expect(t.loop.isBusy(t.unit)).toBe(false);
    t.loop.resyncAll();
    await t.loop.idle();
    expect(t.engine.calls).toEqual(['a']);
    t.health.settle(t.unit, 'healthy', [web('current', 'Available')], 5);
    await t.loop.settled();
    // Once the wait has its result the re-sync runs again, and does not wait a second time.
    t.loop.resyncAll();
    await t.loop.settled();
    expect(t.engine.calls).toEqual(['a', 'a']);
    expect(t.health.waits).toHaveLength(1);
    expect(t.logs().map((l) => l.msg)).toEqual(['commit healthy']);
    await t.loop.close();
  });

  it('with reconcile_timeout 0 does not wait, and still reports health as it changes', async () => {
    const t = healthLoop({ config: { reconcileTimeoutMs: 0 } });
    t.loop.setDesired(t.want('a'));
    await t.loop.idle();
    expect(t.health.waits).toEqual([]);
    expect(t.loop.isWaiting('gitops-project')).toBe(false);
    t.health.change(
      t.unit,
      'degraded',
      [web('failed', 'CrashLoopBackOff', 'back-off 10s restarting failed container')],
      800,
    );
    expect(t.sent.map((m) => `${m.type} ${m.result}`)).toEqual([
      'status applied',
      'health progressing',
      'health degraded',
    ]);
    expect(t.logs()).toEqual([
      expect.objectContaining({
        msg: 'commit degraded',
        level: 'warn',
        waitedMs: 800,
        notCurrent: ['Deployment/default/web failed: CrashLoopBackOff: back-off 10s restarting failed container'],
      }),
    ]);
    await t.loop.close();
  });

  it('logs applied before the health of the same commit, when the objects are current at once', async () => {
    const t = healthLoop({ config: { reconcileTimeoutMs: 0 } });
    const synced = t.health.synced.bind(t.health);
    t.health.synced = (unit) => {
      synced(unit);
      t.health.change(unit.name, 'healthy', [cm], 0);
    };
    t.loop.setDesired(t.want('a'));
    await t.loop.idle();
    expect(t.allLogs().filter((m) => m === 'applied' || m.startsWith('commit '))).toEqual([
      'applied',
      'commit healthy',
    ]);
    expect(t.sent.map((m) => `${m.type} ${m.result}`)).toEqual(['status applied', 'health healthy']);
    await t.loop.close();
  });

  it('does not re-apply a degraded or timed-out commit in a loop', async () => {
    const t = healthLoop();
    t.loop.setDesired(t.want('a'));
    await t.loop.idle();
    t.health.settle(t.unit, 'timed_out', [web('in_progress', 'NotAvailable', '0/1 replicas available')], 3_000);
    await t.loop.settled();
    await new Promise((r) => setTimeout(r, 40)); // 8 retry delays of this loop
    await t.loop.settled();
    expect(t.engine.calls).toEqual(['a']);
    expect(t.logs()).toEqual([
      expect.objectContaining({
        msg: 'commit timed out',
        level: 'warn',
        waitedMs: 3_000,
        notCurrent: ['Deployment/default/web in_progress: NotAvailable: 0/1 replicas available'],
      }),
    ]);
    await t.loop.close();
  });

  it('logs once per change of result and records an Event once per object turning failed', async () => {
    const t = healthLoop({ config: { reconcileTimeoutMs: 0 } });
    t.loop.setDesired(t.want('a'));
    await t.loop.idle();
    const crash = web('failed', 'CrashLoopBackOff', 'back-off 10s restarting failed container');
    t.health.change(t.unit, 'healthy', [web('current', 'Available')], 100);
    t.health.change(t.unit, 'healthy', [web('current', 'Available')], 100); // no change: nothing new
    t.health.change(t.unit, 'degraded', [crash], 200);
    t.health.change(t.unit, 'degraded', [{ ...crash, message: 'back-off 20s restarting failed container' }], 200);
    t.health.change(t.unit, 'progressing', [web('in_progress', 'NotAvailable')]); // the container restarted
    t.health.change(t.unit, 'degraded', [crash], 300); // and crashed again
    t.health.change(t.unit, 'healthy', [web('current', 'Available')], 400);
    expect(t.logs().map((l) => l.msg)).toEqual(['commit healthy', 'commit degraded', 'commit healthy']);
    expect(t.failures.map((f) => `${f.entry.id} ${f.entry.reason} ${f.commit[0]}`)).toEqual([
      'Deployment/default/web CrashLoopBackOff a',
      'Deployment/default/web CrashLoopBackOff a',
    ]);
    // Every change of result is a frame at once; the repeated report is none, and the second
    // degraded one (same result, a new message within the second) waits and is then moot.
    expect(t.sent.filter((m) => m.type === 'health').map((m) => m.result)).toEqual([
      'progressing',
      'healthy',
      'degraded',
      'progressing',
      'degraded',
      'healthy',
    ]);
    const text = await t.metrics.registry.metrics();
    expect(text).toContain('gitops_agent_time_to_healthy_seconds_count{project="gitops-project"} 1');
    await t.loop.close();
  });

  it('ends a wait when leadership is lost and reports nothing from a standby', async () => {
    const t = healthLoop();
    t.loop.setDesired(t.want('a'));
    await t.loop.idle();
    t.loop.setActive(false);
    expect(t.health.waits[0].signal?.aborted).toBe(true);
    expect(t.loop.isWaiting('gitops-project')).toBe(false);
    const before = t.sent.length;
    t.health.change(t.unit, 'healthy', [web('current', 'Available')], 10);
    expect(t.sent.length).toBe(before);
    // Leading again applies and waits again: the earlier wait never came to a result.
    t.loop.setActive(true);
    await t.loop.idle();
    expect(t.engine.calls).toEqual(['a', 'a']);
    expect(t.health.waits.map((w) => w.signal?.aborted)).toEqual([true, false]);
    await t.loop.close();
  });

  it('waits again for a commit whose first apply failed once it applies', async () => {
    const health = new HealthDouble();
    let attempts = 0;
    const ok = healthEngine(health);
    const loop = new SyncLoop({
      engine: {
        sync: (unit: SyncUnit, o?: { signal?: AbortSignal }) =>
          attempts++ === 0 ? Promise.reject(new Error('connect ECONNREFUSED')) : ok.sync(unit, o),
      },
      health,
      unitName: (p) => p,
      logger: createLogger({ level: 'silent' }),
      report: () => undefined,
      retry: { baseMs: 5, capMs: 5, minMs: 5 },
    });
    loop.setActive(true);
    loop.setDesired(desired('a'));
    await loop.idle();
    expect(health.waits).toEqual([]);
    await new Promise((r) => setTimeout(r, 20));
    await loop.idle();
    expect(health.waits).toHaveLength(1);
    await loop.close();
  });
});

describe('SyncLoop health of a partial apply', () => {
  it('reports the health of what a partial apply applied, without waiting, and retries the apply as before', async () => {
    const health = new HealthDouble();
    const sent: Array<StatusMessage | HealthMessage> = [];
    let attempts = 0;
    const engine = {
      async sync(unit: SyncUnit): Promise<ChangeSet> {
        attempts++;
        health.synced(unit);
        return {
          unit: unit.name,
          commit: unit.commit,
          changes: [
            { id: 'Deployment/default/db', action: 'created' },
            {
              id: 'Deployment/default/web',
              action: 'skipped',
              reason: 'waits for Deployment/default/db',
              error: { code: 'DEPENDENCY_NOT_READY', message: 'Deployment/default/db is failed' },
            },
          ],
          errors: [],
          durationMs: 1,
          dryRun: false,
        };
      },
    };
    const loop = new SyncLoop({
      engine,
      health,
      unitName: (p) => p,
      logger: createLogger({ level: 'silent' }),
      report: (m) => sent.push(m),
      retry: { baseMs: 60_000, capMs: 60_000, minMs: 60_000 },
    });
    loop.setActive(true);
    loop.setDesired(desired('a'));
    await loop.idle();
    expect(health.waits).toEqual([]);
    health.change('gitops-project', 'degraded', [
      { id: 'Deployment/default/db', state: 'failed', reason: 'CrashLoopBackOff', message: '' },
    ]);
    expect(sent.map((m) => `${m.type} ${m.result}`)).toEqual([
      'status partial',
      'health progressing',
      'health degraded',
    ]);
    expect(loop.applied()).toEqual({});
    expect(attempts).toBe(1);
    await loop.close();
  });
});

describe('healthFrameOf', () => {
  it('sends the report of the commit in force, leaving empty strings out', () => {
    expect(
      healthFrameOf('group/app', 'd1', 'a'.repeat(40), {
        unit: 'u',
        commit: 'a'.repeat(40),
        result: 'timed_out',
        objects: [
          web('in_progress', 'NotAvailable', '0/1 replicas available'),
          { id: 'ConfigMap/default/old', state: 'terminating', reason: '', message: '', pruned: true },
        ],
        waitedMs: 3000.4,
      }),
    ).toEqual({
      type: 'health',
      project: 'group/app',
      commit: 'a'.repeat(40),
      digest: 'd1',
      result: 'timed_out',
      objects: [
        {
          id: 'Deployment/default/web',
          state: 'in_progress',
          reason: 'NotAvailable',
          message: '0/1 replicas available',
        },
        { id: 'ConfigMap/default/old', state: 'terminating', pruned: true },
      ],
      waitedMs: 3000,
    });
  });
});
