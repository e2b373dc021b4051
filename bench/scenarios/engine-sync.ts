/**
 * Scenarios 1 and 2: the engine (in this process, as the agent embeds it) applies the set into an
 * empty namespace, then re-syncs it unchanged. Writes are counted from the API server's audit log.
 * Baseline: a raw keep-alive HTTPS create loop of the same objects, 8 requests in flight, into
 * another namespace: the floor for creating N objects on this API server.
 */
import type { Engine, SyncUnit } from '../../src/agent/reconcile/engine.js';
import { openEngine, type OwnedEngine } from '../../src/agent/commands/engine-parts.js';
import { createLogger } from '../../src/common/logger.js';
import type { ManifestProjectConfig } from '../../src/protocol/messages.js';
import { syncAuditLog, writeRequests, type AuditEvent } from '../../e2e/harness/audit.js';
import { ADMIN_USERNAME } from '../../e2e/harness/controlplane.js';
import {
  collectionPath,
  meetsGoals,
  objectSet,
  type BenchContext,
  type KubeObject,
  type ScenarioResult,
} from '../lib/context.js';
import { loadAverage, round } from '../lib/stats.js';

const ENGINE_NS = 'bench-engine';
const BASELINE_NS = 'bench-baseline';
const IN_FLIGHT = 8;

const config = (namespace: string): ManifestProjectConfig => ({
  id: 'bench',
  ref: {},
  defaultNamespace: namespace,
  paths: [],
  reconcileTimeoutMs: 600_000,
  dryRunStrategy: 'none',
  prune: true,
  pruneTimeoutMs: 600_000,
  prunePropagationPolicy: 'background',
  inventoryPolicy: 'must_match',
});

/** Admin writes (ours: the engine and the bench both use the admin certificate) between two instants. */
async function adminWrites(ctx: BenchContext, fromMs: number, toMs: number): Promise<AuditEvent[]> {
  const events = await syncAuditLog(ctx.kc, ctx.cp.auditLogPath);
  return writeRequests(events, { username: ADMIN_USERNAME, sinceMs: fromMs }).filter(
    (e) => Date.parse(e.requestReceivedTimestamp) <= toMs,
  );
}

/** Creates `objects` (the Namespace first) with `inFlight` requests at a time; returns seconds. */
async function createLoop(ctx: BenchContext, objects: KubeObject[], inFlight: number): Promise<number> {
  const t0 = performance.now();
  const [ns, ...rest] = objects;
  await ctx.raw.ok('POST', collectionPath('Namespace', ''), ns);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < rest.length) {
      const o = rest[next++];
      await ctx.raw.ok('POST', collectionPath(o.kind, o.metadata.namespace ?? ''), o);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return (performance.now() - t0) / 1000;
}

/** One object of each kind created and deleted, so neither side pays the API server's first-use costs. */
async function warmUp(ctx: BenchContext): Promise<void> {
  const set = objectSet(10, 'bench-warmup');
  await createLoop(ctx, set, IN_FLIGHT);
  await ctx.raw.request('DELETE', '/api/v1/namespaces/bench-warmup');
}

function unitFor(objects: KubeObject[], namespace: string): SyncUnit {
  // The inventory lives in `default`, so the target namespace starts out not existing at all.
  return {
    name: 'bench',
    namespace: 'default',
    files: [{ path: 'all.json', content: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }) }],
    config: config(namespace),
  };
}

export async function initialSync(ctx: BenchContext): Promise<ScenarioResult> {
  const n = ctx.options.objects;
  await warmUp(ctx);

  ctx.progress(`baseline: raw create loop of ${n} objects, ${IN_FLIGHT} in flight`);
  const baseFrom = Date.now();
  const baseSeconds = await createLoop(ctx, objectSet(n, BASELINE_NS), IN_FLIGHT);
  const baseWrites = (await adminWrites(ctx, baseFrom, Date.now())).length;

  ctx.progress(`engine: initial sync of ${n} objects`);
  const owned = await openEngine(ctx.kc, { logger: createLogger({ level: 'warn' }) });
  const engine = owned.engine;
  ctx.shared.set('engine', owned);
  const unit = unitFor(objectSet(n, ENGINE_NS), ENGINE_NS);
  ctx.shared.set('unit', unit);
  const from = Date.now();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await engine.sync(unit);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const writes = (await adminWrites(ctx, from, Date.now())).length;
  const created = result.changes.filter((c) => c.action === 'created').length;
  const notes: string[] = [];
  if (result.errors.length)
    notes.push(
      `engine errors: ${result.errors
        .slice(0, 3)
        .map((e) => e.message)
        .join('; ')}`,
    );
  if (created !== n + 1) notes.push(`created ${created} of ${n + 1} objects`);

  const metrics = {
    seconds: round(seconds, 3),
    writes,
    created,
    engine_cpu_seconds: round((cpu.user + cpu.system) / 1e6, 2),
    x_baseline: round(seconds / baseSeconds, 2),
  };
  const goals = { x_baseline: { max: 2 }, ...(n === 1000 ? { seconds: { max: 1.5 } } : {}) };
  return {
    scenario: 'initial-sync',
    objects: n,
    metrics,
    baseline: { seconds: round(baseSeconds, 3), writes: baseWrites },
    goals,
    pass: meetsGoals(metrics, goals) && notes.length === 0,
    load: loadAverage(),
    ...(notes.length ? { notes } : {}),
  };
}

export async function unchangedResync(ctx: BenchContext): Promise<ScenarioResult> {
  const n = ctx.options.objects;
  let engine: Engine | undefined = (ctx.shared.get('engine') as OwnedEngine | undefined)?.engine;
  let unit = ctx.shared.get('unit') as SyncUnit | undefined;
  if (!engine || !unit) {
    ctx.progress('engine: initial sync first (initial-sync was not selected)');
    const owned = await openEngine(ctx.kc, { logger: createLogger({ level: 'warn' }) });
    engine = owned.engine;
    unit = unitFor(objectSet(n, ENGINE_NS), ENGINE_NS);
    ctx.shared.set('engine', owned);
    await engine.sync(unit);
  }
  // Baseline: one list per kind of the set, the least a re-sync that trusts nothing must read.
  const b0 = performance.now();
  for (const kind of ['ConfigMap', 'Secret', 'Service', 'Deployment'])
    await ctx.raw.ok('GET', collectionPath(kind, ENGINE_NS));
  const baseSeconds = (performance.now() - b0) / 1000;

  ctx.progress(`engine: unchanged re-sync of ${n} objects`);
  const from = Date.now();
  const t0 = performance.now();
  const result = await engine.sync(unit);
  const seconds = (performance.now() - t0) / 1000;
  const writes = (await adminWrites(ctx, from, Date.now())).length;
  const unchanged = result.changes.filter((c) => c.action === 'unchanged').length;
  const notes = unchanged === n + 1 ? [] : [`unchanged ${unchanged} of ${n + 1}`];
  const metrics = { seconds: round(seconds, 3), writes, unchanged };
  const goals = { writes: { max: 0 }, seconds: { max: 0.3 } };
  return {
    scenario: 'unchanged-resync',
    objects: n,
    metrics,
    baseline: { seconds: round(baseSeconds, 3), writes: 0 },
    goals,
    pass: meetsGoals(metrics, goals) && notes.length === 0,
    load: loadAverage(),
    ...(notes.length ? { notes } : {}),
  };
}
