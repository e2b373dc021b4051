/**
 * Scenarios 6 and 3, on `gitops-agent run` (the real process) managing the set through the real
 * server and Git server: its RSS when idle after the sync, and how fast it reverts edits made by
 * another client. Also the "main" server (webhooks on, polling 10 min) that commit-to-cluster
 * reuses.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestRepo } from '../../e2e/harness/git-repo.js';
import type { ManagedProcess } from '../../e2e/harness/processes.js';
import {
  collectionPath,
  meetsGoals,
  objectSet,
  type BenchContext,
  type KubeObject,
  type ScenarioResult,
} from '../lib/context.js';
import { benchRepo, startAgent, startServer, waitForLog, type BenchServer } from '../lib/fleet.js';
import { rvAfter, type RawWatchEvent } from '../lib/kube-raw.js';
import { latencySummary, loadAverage, procStats, round } from '../lib/stats.js';

export const AGENT_NS = 'bench-agent';
export const C2C_WEBHOOK = 'bench-c2c-webhook';

/** A manifest project holding one JSON List file. */
export function listFile(objects: KubeObject[]): Record<string, string> {
  return { 'objects.json': JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }, null, 1) };
}

/** The single ConfigMap (plus Namespace) whose `data.value` commit-to-cluster changes. */
export function c2cObjects(namespace: string, value: string): KubeObject[] {
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c2c', namespace }, data: { value } },
  ];
}

interface MainServer {
  server: BenchServer;
  repos: Map<string, TestRepo>;
}

/** The server of scenarios 3, 4 (webhook) and 6, started once with its projects already committed. */
export async function mainServer(ctx: BenchContext): Promise<MainServer> {
  const cached = ctx.shared.get('main-server') as MainServer | undefined;
  if (cached) return cached;
  ctx.progress('starting gitops-server (webhooks on, polling every 10m) with its config and manifest projects');
  const repos = new Map<string, TestRepo>();
  const objects = await benchRepo(ctx.git, 'bench-objects');
  await objects.commit({ files: listFile(objectSet(ctx.options.objects, AGENT_NS)), message: 'the bench set' });
  repos.set('bench-objects', objects);
  const c2c = await benchRepo(ctx.git, C2C_WEBHOOK);
  await c2c.commit({ files: listFile(c2cObjects(C2C_WEBHOOK, 'v0')), message: 'v0' });
  repos.set(C2C_WEBHOOK, c2c);
  const server = await startServer(ctx.group, ctx.git, {
    name: 'main',
    pollInterval: '10m',
    webhookSecret: randomBytes(24).toString('base64url'),
    progress: ctx.progress,
    agents: [
      { name: 'managed', manifestProject: 'bench-objects' },
      { name: 'c2c-webhook', manifestProject: C2C_WEBHOOK },
    ],
  });
  const main = { server, repos };
  ctx.shared.set('main-server', main);
  return main;
}

interface ManagedAgent {
  proc: ManagedProcess;
  commit: string;
  syncSeconds: number;
}

/** `gitops-agent run` managing the set, started once and waited for until it applied the commit. */
export async function managedAgent(ctx: BenchContext): Promise<ManagedAgent> {
  const cached = ctx.shared.get('managed-agent') as ManagedAgent | undefined;
  if (cached) return cached;
  const main = await mainServer(ctx);
  const commit = await main.repos.get('bench-objects')!.head();
  ctx.progress(`starting gitops-agent run for ${ctx.options.objects} objects`);
  const t0 = performance.now();
  const proc = startAgent(ctx.group, main.server, 'managed', ctx.cp.kubeconfigPath);
  ctx.progress(`gitops-agent managed started (pid ${proc.pid})`);
  const applied = await waitForLog(
    proc,
    (r) => r.msg === 'applied' || (r.msg !== undefined && /failed|partial/.test(r.msg) && r.commit === commit),
    180_000,
    `"applied" for ${commit}`,
  );
  if (applied.msg !== 'applied')
    throw new Error(`managed agent: ${applied.msg}: ${JSON.stringify(applied).slice(0, 500)}`);
  const agent = { proc, commit, syncSeconds: (performance.now() - t0) / 1000 };
  ctx.shared.set('managed-agent', agent);
  return agent;
}

/** RSS of an idle bare `node` (the floor any Node agent starts from), in MiB. */
async function bareNodeRss(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
  try {
    await sleep(1000);
    return procStats(child.pid!).rssMib;
  } finally {
    child.kill('SIGKILL');
  }
}

export async function agentMemory(ctx: BenchContext): Promise<ScenarioResult> {
  const agent = await managedAgent(ctx);
  ctx.progress('agent applied the set; idling 5 s before reading its RSS');
  await sleep(5000);
  const stats = procStats(agent.proc.pid);
  const metrics = {
    rss_mib: stats.rssMib,
    peak_rss_mib: stats.hwmMib,
    cpu_seconds: stats.cpuSeconds,
    startup_sync_seconds: round(agent.syncSeconds, 2),
  };
  const goals = { rss_mib: { max: 100 } };
  return {
    scenario: 'agent-memory',
    objects: ctx.options.objects,
    metrics,
    baseline: { bare_node_rss_mib: await bareNodeRss() },
    goals,
    pass: meetsGoals(metrics, goals),
    load: loadAverage(),
  };
}

/** Watch events per object key (`Kind/name`), with waiters woken on each new one. */
class EventLog {
  private readonly events = new Map<string, RawWatchEvent[]>();
  private readonly waiters = new Map<string, () => void>();

  add(kind: string, e: RawWatchEvent): void {
    const key = `${kind}/${e.object.metadata.name}`;
    let list = this.events.get(key);
    if (!list) this.events.set(key, (list = []));
    list.push(e);
    this.waiters.get(key)?.();
  }

  /** The first event on `key` after `rv` that satisfies `ok`, or undefined after `timeoutMs`. */
  async first(
    key: string,
    rv: string,
    ok: (o: RawWatchEvent['object']) => boolean,
    timeoutMs: number,
  ): Promise<RawWatchEvent | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = (this.events.get(key) ?? []).find(
        (e) => rvAfter(e.object.metadata.resourceVersion, rv) && ok(e.object),
      );
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.set(key, () => {
          clearTimeout(timer);
          resolve();
        });
      });
      this.waiters.delete(key);
    }
  }
}

// watch payloads are free-form JSON
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;
const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** For each kind: a JSON patch to a field Git owns, and the test that the object is back at Git's value. */
const EDITS: Record<string, { patch: (i: number) => unknown[]; back: (o: Obj, i: number) => boolean }> = {
  ConfigMap: {
    patch: () => [{ op: 'replace', path: '/data/index', value: 'edited' }],
    back: (o, i) => o.data?.index === String(i),
  },
  Secret: {
    patch: () => [{ op: 'replace', path: '/data/password', value: b64('edited') }],
    back: (o, i) => o.data?.password === b64(`pw-${i}`),
  },
  Service: {
    patch: () => [{ op: 'replace', path: '/spec/ports/0/targetPort', value: 9999 }],
    back: (o) => o.spec?.ports?.[0]?.targetPort === 8080,
  },
  Deployment: {
    patch: () => [{ op: 'replace', path: '/spec/replicas', value: 3 }],
    back: (o) => o.spec?.replicas === 1,
  },
};
const KINDS = Object.keys(EDITS);
const REVERT_TIMEOUT_MS = 5000;

/** Baseline: response of a JSON patch → the watch event carrying that write, on one ConfigMap. */
async function writeToWatchLatency(ctx: BenchContext, samples: number): Promise<number[]> {
  const ns = 'bench-watch-baseline';
  await ctx.raw.ok('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  await ctx.raw.ok('POST', collectionPath('ConfigMap', ns), {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'probe' },
    data: { n: '0' },
  });
  const log = new EventLog();
  const stop = await ctx.raw.watch(collectionPath('ConfigMap', ns), (e) => log.add('ConfigMap', e));
  const out: number[] = [];
  try {
    for (let i = 1; i <= samples; i++) {
      const res = await ctx.raw.ok(
        'PATCH',
        `${collectionPath('ConfigMap', ns)}/probe?fieldManager=bench-editor`,
        [{ op: 'replace', path: '/data/n', value: String(i) }],
        'application/json-patch+json',
      );
      const rv = (res.body as Obj).metadata.resourceVersion as string;
      const before = (BigInt(rv) - 1n).toString();
      const e = await log.first('ConfigMap/probe', before, (o) => o.metadata.resourceVersion === rv, REVERT_TIMEOUT_MS);
      if (e) out.push(Math.max(0, e.at - res.at));
      await sleep(20);
    }
  } finally {
    stop();
  }
  return out;
}

export async function driftRevert(ctx: BenchContext): Promise<ScenarioResult> {
  await managedAgent(ctx);
  const set = objectSet(ctx.options.objects, AGENT_NS).slice(1);
  const byKind = new Map<string, KubeObject[]>(KINDS.map((k) => [k, set.filter((o) => o.kind === k)]));
  const log = new EventLog();
  const stops = await Promise.all(KINDS.map((k) => ctx.raw.watch(collectionPath(k, AGENT_NS), (e) => log.add(k, e))));
  const samples: number[] = [];
  const perKind: Record<string, number[]> = Object.fromEntries(KINDS.map((k) => [k, []]));
  let timeouts = 0;
  try {
    ctx.progress(`${ctx.options.edits} edits by another field manager, one at a time`);
    for (let j = 0; j < ctx.options.edits; j++) {
      const kind = KINDS[j % KINDS.length];
      const pool = byKind.get(kind)!;
      if (pool.length === 0) continue;
      const obj = pool[Math.floor(j / KINDS.length) % pool.length];
      const i = Number(obj.metadata.name.replace('obj-', ''));
      const res = await ctx.raw.ok(
        'PATCH',
        `${collectionPath(kind, AGENT_NS)}/${obj.metadata.name}?fieldManager=bench-editor`,
        EDITS[kind].patch(i),
        'application/json-patch+json',
      );
      const rv = (res.body as Obj).metadata.resourceVersion as string;
      const back = await log.first(
        `${kind}/${obj.metadata.name}`,
        rv,
        (o) => EDITS[kind].back(o as Obj, i),
        REVERT_TIMEOUT_MS,
      );
      const ms = back ? Math.max(0, back.at - res.at) : REVERT_TIMEOUT_MS;
      if (!back) timeouts++;
      samples.push(ms);
      perKind[kind].push(ms);
      if ((j + 1) % 50 === 0) ctx.progress(`  ${j + 1} edits`);
      await sleep(20);
    }
  } finally {
    for (const stop of stops) stop();
  }
  ctx.progress('baseline: API server write → watch event latency');
  const base = latencySummary(await writeToWatchLatency(ctx, Math.min(ctx.options.edits, 100)));
  const summary = latencySummary(samples);
  const metrics: Record<string, number> = { ...summary, edits: samples.length, not_reverted: timeouts };
  for (const k of KINDS)
    if (perKind[k].length) metrics[`${k.toLowerCase()}_p50_ms`] = latencySummary(perKind[k]).p50_ms;
  const goals = { p50_ms: { max: 20 }, p99_ms: { max: 100 } };
  const notes = timeouts
    ? [`${timeouts} edits not reverted within ${REVERT_TIMEOUT_MS} ms (counted as ${REVERT_TIMEOUT_MS} ms)`]
    : [];
  return {
    scenario: 'drift-revert',
    objects: ctx.options.objects,
    metrics,
    baseline: base,
    goals,
    pass: meetsGoals(metrics, goals) && timeouts === 0,
    load: loadAverage(),
    ...(notes.length ? { notes } : {}),
  };
}
