/**
 * Scenario 7: commit-to-healthy. Pods must really run for health to mean anything, so this one
 * starts a real node (e2e/harness/node.ts: containerd, kubelet, scheduler) next to the bench's
 * control plane, or is skipped, naming what the machine lacks, when it cannot run one.
 *
 * Each commit changes the nginx Deployment's pod template (an annotation), so a real rollout
 * happens; latency runs from `git push` returning to the agent's `commit healthy` log line for
 * that commit (its own timestamp). The bench's own watch of the Deployment splits it: when the API
 * server's Deployment status showed the rollout complete (kstatus' rule), and from there to the
 * agent's report (what health detection adds). Baselines, same run and node: a raw create of the
 * same Deployment until all its pods are Ready (the node's floor for starting pods), and a raw
 * patch of the same template change until the rollout is complete (the floor for what a commit
 * asks for). Steps alternate per iteration so load changes hit both sides alike.
 *
 * It runs first of all scenarios and removes its Node at the end: the other scenarios' Deployments
 * must never land on it.
 */
import { randomBytes } from 'node:crypto';
import type { TestRepo } from '../../e2e/harness/git-repo.js';
import { checkNodeHost, startNode, type TestNode } from '../../e2e/harness/node.js';
import type { ManagedProcess } from '../../e2e/harness/processes.js';
import { meetsGoals, type BenchContext, type KubeObject, type ScenarioResult } from '../lib/context.js';
import {
  benchRepo,
  sendWebhook,
  startAgent,
  startServer,
  waitForLog,
  type BenchServer,
  type LogRecord,
} from '../lib/fleet.js';
import type { KubeJson, RawKube, RawWatchEvent } from '../lib/kube-raw.js';
import { latencySummary, loadAverage, nowMs, round } from '../lib/stats.js';
import { listFile } from './agent.js';

const PROJECT = 'bench-health';
const FLOOR_NS = 'bench-health-floor';
const REPLICAS = 2;
/** One step (pods starting on a warm node) takes seconds; this only bounds a stuck one. */
const STEP_TIMEOUT_MS = 60_000;
/** The agent's first commit also starts it (connect, discovery, first pods on a fresh node). */
const FIRST_TIMEOUT_MS = 120_000;
const REVISION = 'bench.gitops.dev/revision';
const DEPLOYMENTS = (ns: string): string => `/apis/apps/v1/namespaces/${ns}/deployments`;
const PODS = (ns: string): string => `/api/v1/namespaces/${ns}/pods`;

/** The seed's nginx Deployment (two replicas, `nginx:1.27`), its template marked with `revision`. */
export function nginxDeployment(namespace: string, revision: string): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'nginx', namespace },
    spec: {
      replicas: REPLICAS,
      selector: { matchLabels: { app: 'nginx' } },
      template: {
        metadata: { labels: { app: 'nginx' }, annotations: { [REVISION]: revision } },
        spec: { containers: [{ name: 'nginx', image: 'nginx:1.27' }] },
      },
    },
  };
}

interface DeploymentJson {
  metadata: { generation?: number };
  spec?: { replicas?: number; template?: { metadata?: { annotations?: Record<string, string> } } };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    updatedReplicas?: number;
    readyReplicas?: number;
    availableReplicas?: number;
  };
}

/**
 * kstatus' rule for a Deployment being current, at template revision `revision`: the controller
 * saw this generation and every replica is updated, ready and available, none of an older ReplicaSet left.
 */
export function rolledOut(object: unknown, revision: string): boolean {
  const d = object as DeploymentJson | undefined;
  if (!d?.spec || d.spec.template?.metadata?.annotations?.[REVISION] !== revision) return false;
  const want = d.spec.replicas ?? 1;
  const s = d.status ?? {};
  return (
    (s.observedGeneration ?? -1) >= (d.metadata.generation ?? 0) &&
    s.replicas === want &&
    s.updatedReplicas === want &&
    s.readyReplicas === want &&
    s.availableReplicas === want
  );
}

/** True when `pod` has condition Ready=True and is not being deleted. */
export function podReady(pod: unknown): boolean {
  const p = pod as {
    metadata: { deletionTimestamp?: string };
    status?: { conditions?: Array<{ type: string; status: string }> };
  };
  return (
    !p.metadata.deletionTimestamp && (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')
  );
}

/** The live objects of one watched collection, and waiters for a condition on them with event arrival times. */
class Follow {
  readonly objects = new Map<string, KubeJson>();
  private waiters = new Set<() => void>();
  /** Arrival time of the event being handled. */
  private at = 0;

  onEvent = (e: RawWatchEvent): void => {
    if (e.type === 'DELETED') this.objects.delete(e.object.metadata.name);
    else if (e.type === 'ADDED' || e.type === 'MODIFIED') this.objects.set(e.object.metadata.name, e.object);
    else return;
    this.at = e.at;
    for (const wake of [...this.waiters]) wake();
  };

  /**
   * Resolves with the arrival time of the first event after which `check` holds (now, if it
   * already does), or undefined after `timeoutMs`. Call it before the action that should make it hold.
   */
  until(check: (objects: ReadonlyMap<string, KubeJson>) => boolean, timeoutMs: number): Promise<number | undefined> {
    if (check(this.objects)) return Promise.resolve(nowMs());
    return new Promise((resolve) => {
      const done = (at: number | undefined): void => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve(at);
      };
      const wake = (): void => {
        if (check(this.objects)) done(this.at);
      };
      const timer = setTimeout(() => done(undefined), timeoutMs);
      this.waiters.add(wake);
    });
  }
}

async function follow(raw: RawKube, collection: string): Promise<{ follow: Follow; stop: () => void }> {
  const f = new Follow();
  const stop = await raw.watch(collection, f.onEvent);
  return { follow: f, stop };
}

/** Milliseconds from `start` to `at`, or undefined for a step that did not finish. */
const since = (start: number, at: number | undefined): number | undefined =>
  at === undefined ? undefined : at - start;

interface FloorSample {
  createReadyMs?: number;
  rolloutMs?: number;
}

/**
 * One floor iteration in FLOOR_NS: create until all pods are Ready, roll out a template change, then
 * delete it and wait until no pod is left.
 */
async function floorIteration(raw: RawKube, pods: Follow, deployments: Follow, i: number): Promise<FloorSample> {
  const allReady = pods.until((m) => [...m.values()].filter(podReady).length === REPLICAS, STEP_TIMEOUT_MS);
  const t0 = nowMs();
  await raw.ok('POST', DEPLOYMENTS(FLOOR_NS), nginxDeployment(FLOOR_NS, `floor-${i}`));
  const createReadyMs = since(t0, await allReady);
  const next = `floor-${i}-rollout`;
  const done = deployments.until((m) => rolledOut(m.get('nginx'), next), STEP_TIMEOUT_MS);
  const t1 = nowMs();
  await raw.ok(
    'PATCH',
    `${DEPLOYMENTS(FLOOR_NS)}/nginx`,
    nginxDeployment(FLOOR_NS, next),
    'application/merge-patch+json',
  );
  const rolloutMs = since(t1, await done);
  const gone = pods.until((m) => m.size === 0, STEP_TIMEOUT_MS);
  await raw.ok('DELETE', `${DEPLOYMENTS(FLOOR_NS)}/nginx`, { propagationPolicy: 'Background' });
  if ((await gone) === undefined)
    throw new Error(`floor: pods of ${FLOOR_NS}/nginx still there after ${STEP_TIMEOUT_MS} ms`);
  return {
    ...(createReadyMs === undefined ? {} : { createReadyMs }),
    ...(rolloutMs === undefined ? {} : { rolloutMs }),
  };
}

interface AgentSample {
  /** push → `commit healthy` (agent's own timestamp). */
  healthyMs?: number;
  /** push → the bench's watch showing the rollout complete. */
  rolledOutMs?: number;
  /** push → `applied`. */
  appliedMs?: number;
  /** `commit degraded` / `commit timed out` instead, or nothing in time. */
  failure?: string;
}

const logTime = (r: LogRecord): number => Date.parse(String(r.time));
/** The agent's one log line per health result of a commit (runner.ts). */
const VERDICTS = ['commit healthy', 'commit degraded', 'commit timed out'];

/** One commit: change the template, push, webhook; wait for the rollout (watch) and the agent's verdict (log). */
async function agentIteration(
  repo: TestRepo,
  server: BenchServer,
  agent: ManagedProcess,
  watched: { deployments: Follow; pods: Follow },
  namespace: string,
  i: number,
): Promise<AgentSample> {
  const { deployments, pods } = watched;
  const revision = `commit-${i}`;
  const rolled = deployments.until((m) => rolledOut(m.get('nginx'), revision), STEP_TIMEOUT_MS);
  // commit() returns once the push returned; a Git host sends its push webhook right after accepting it.
  const sha = await repo.commit({ files: manifests(namespace, revision), message: revision });
  const pushed = nowMs();
  await sendWebhook(server, repo.name);
  const verdict: LogRecord | Error = await waitForLog(
    agent,
    (r) => r.commit === sha && VERDICTS.includes(String(r.msg)),
    STEP_TIMEOUT_MS,
    `a health verdict for ${sha}`,
  ).catch((err: Error) => err);
  const applied = await waitForLog(agent, (r) => r.msg === 'applied' && r.commit === sha, 1000, '"applied"').catch(
    () => undefined,
  );
  const sample: AgentSample = applied ? { appliedMs: logTime(applied) - pushed } : {};
  // Not healthy: the rollout will not complete either, so neither it nor the pods are waited for.
  if (verdict instanceof Error) return { ...sample, failure: `${revision}: ${verdict.message.split('\n')[0]}` };
  if (verdict.msg !== 'commit healthy') return { ...sample, failure: `${revision}: ${String(verdict.msg)}` };
  const rolledOutMs = since(pushed, await rolled);
  // The old ReplicaSet's pods terminate after the rollout: let them go before the next step starts.
  await pods.until((m) => m.size === REPLICAS, STEP_TIMEOUT_MS);
  return {
    ...sample,
    healthyMs: logTime(verdict) - pushed,
    ...(rolledOutMs === undefined ? {} : { rolledOutMs }),
  };
}

function manifests(namespace: string, revision: string): Record<string, string> {
  return listFile([
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } },
    nginxDeployment(namespace, revision),
  ]);
}

/** A result that says why nothing was measured (the machine cannot run a node). */
function skipped(reason: string): ScenarioResult {
  return {
    scenario: 'commit-to-healthy',
    objects: 1,
    metrics: {},
    baseline: {},
    goals: {},
    pass: false,
    load: loadAverage(),
    skipped: reason,
  };
}

const summary = (samples: Array<number | undefined>): ReturnType<typeof latencySummary> =>
  latencySummary(samples.filter((s): s is number => s !== undefined));

export async function commitToHealthy(ctx: BenchContext): Promise<ScenarioResult> {
  const missing = await checkNodeHost();
  if (missing.length) {
    const reason = `this machine cannot run a node (README "A real node"): ${missing.join('; ')}`;
    ctx.progress(`commit-to-healthy skipped: ${reason}`);
    return skipped(reason);
  }
  const node = await startNode({ kubeconfigPath: ctx.cp.kubeconfigPath, log: (l) => ctx.progress(`node: ${l}`) });
  try {
    return await measure(ctx, node);
  } finally {
    await node.stop();
    // A Node that stays registered, NotReady, would only make the controllers evict and taint: gone.
    await ctx.raw.request('DELETE', `/api/v1/nodes/${node.name}`);
    ctx.progress('node stopped and its Node deleted');
  }
}

async function measure(ctx: BenchContext, node: TestNode): Promise<ScenarioResult> {
  const { raw } = ctx;
  const n = ctx.options.rollouts;
  ctx.progress(`node ${node.name} Ready after ${node.timings.readyMs} ms; ${n} rollouts each way`);
  const repo = await benchRepo(ctx.git, PROJECT);
  await repo.commit({ files: manifests(PROJECT, 'commit-0'), message: 'commit-0' });
  const server = await startServer(ctx.group, ctx.git, {
    name: 'health',
    pollInterval: '10m',
    webhookSecret: randomBytes(24).toString('base64url'),
    agents: [{ name: 'health', manifestProject: PROJECT, defaultNamespace: PROJECT }],
    progress: ctx.progress,
  });
  await raw.ok('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: FLOOR_NS } });
  const agent = startAgent(ctx.group, server, 'health', ctx.cp.kubeconfigPath);
  const watches = await Promise.all([
    follow(raw, PODS(FLOOR_NS)),
    follow(raw, DEPLOYMENTS(FLOOR_NS)),
    follow(raw, DEPLOYMENTS(PROJECT)),
    follow(raw, PODS(PROJECT)),
  ]);
  const [floorPods, floorDeployments, deployments, pods] = watches.map((w) => w.follow);
  const floor: FloorSample[] = [];
  const agentSamples: AgentSample[] = [];
  let stopped: string | undefined;
  try {
    // The first commit, applied and healthy, warms the node (first pods, images unpacked) and the agent.
    const head = await repo.head();
    const first: LogRecord | Error = await waitForLog(
      agent,
      (r) => r.commit === head && VERDICTS.includes(String(r.msg)),
      FIRST_TIMEOUT_MS,
      `a health verdict for ${head}`,
    ).catch((err: Error) => err);
    if (first instanceof Error || first.msg !== 'commit healthy') {
      const why = first instanceof Error ? first.message.split('\n')[0] : String(first.msg);
      stopped = `the first commit was not reported healthy (${why}): nothing measured`;
    } else ctx.progress('agent started and reported its first commit healthy; measuring');
    for (let i = 1; i <= n && !stopped; i++) {
      const t0 = nowMs();
      const f = await floorIteration(raw, floorPods, floorDeployments, i);
      const t1 = nowMs();
      const a = await agentIteration(repo, server, agent, { deployments, pods }, PROJECT, i);
      floor.push(f);
      agentSamples.push(a);
      const ms = (v: number | undefined): string => (v === undefined ? 'n/a' : String(Math.round(v)));
      ctx.progress(
        `  ${i}/${n}: raw create→ready ${ms(f.createReadyMs)}, raw rollout ${ms(f.rolloutMs)} (step ${ms(t1 - t0)}); ` +
          `push→applied ${ms(a.appliedMs)}, →rolled out ${ms(a.rolledOutMs)}, →healthy ${ms(a.healthyMs)} ` +
          `(step ${ms(nowMs() - t1)})${a.failure ? `: ${a.failure}` : ''}`,
      );
      // Each miss costs a full timeout: two in a row say enough, and CI's bench step must not take ten.
      if (a.failure && agentSamples.at(-2)?.failure)
        stopped = `stopped after ${i} of ${n}: two commits in a row not healthy`;
    }
  } finally {
    for (const w of watches) w.stop();
    await ctx.group.stop(agent, 10_000);
    await ctx.group.stop(server.proc, 10_000);
  }
  return result(floor, agentSamples, stopped);
}

function result(floor: FloorSample[], samples: AgentSample[], stopped: string | undefined): ScenarioResult {
  const healthy = summary(samples.map((s) => s.healthyMs));
  const rolled = summary(samples.map((s) => s.rolledOutMs));
  const applied = summary(samples.map((s) => s.appliedMs));
  const lag = summary(
    samples.map((s) =>
      s.healthyMs === undefined || s.rolledOutMs === undefined ? undefined : s.healthyMs - s.rolledOutMs,
    ),
  );
  const create = summary(floor.map((f) => f.createReadyMs));
  const rollout = summary(floor.map((f) => f.rolloutMs));
  const failures = samples.flatMap((s) => (s.failure ? [s.failure] : []));
  const metrics = {
    p50_ms: healthy.p50_ms,
    p99_ms: healthy.p99_ms,
    max_ms: healthy.max_ms,
    // What the product adds to the node's own rollout time, at the median.
    overhead_p50_ms: round(healthy.p50_ms - rollout.p50_ms),
    x_rollout: round(healthy.p50_ms / rollout.p50_ms, 2),
    rolled_out_p50_ms: rolled.p50_ms,
    applied_p50_ms: applied.p50_ms,
    report_lag_p50_ms: lag.p50_ms,
    report_lag_p99_ms: lag.p99_ms,
    rollouts: samples.length,
    not_healthy: failures.length,
  };
  // Goals on what the product controls: getting the commit applied, and noticing the rollout is done. The rollout
  // between is the node's (it varies by a second from one rollout to the next here); overhead_p50_ms and x_rollout
  // put the whole beside it for reading.
  const goals = { applied_p50_ms: { max: 500 }, report_lag_p99_ms: { max: 1000 } };
  const floorMissing = floor.filter((f) => f.createReadyMs === undefined || f.rolloutMs === undefined).length;
  const notes = [
    ...(stopped ? [stopped] : []),
    ...failures.slice(0, 5),
    ...(failures.length > 5 ? [`and ${failures.length - 5} more commits not reported healthy`] : []),
    ...(floorMissing ? [`${floorMissing} floor iterations did not finish within ${STEP_TIMEOUT_MS} ms`] : []),
  ];
  return {
    scenario: 'commit-to-healthy',
    objects: 1,
    metrics,
    baseline: {
      create_ready_p50_ms: create.p50_ms,
      create_ready_p99_ms: create.p99_ms,
      rollout_p50_ms: rollout.p50_ms,
      rollout_p99_ms: rollout.p99_ms,
    },
    goals,
    pass: meetsGoals(metrics, goals) && notes.length === 0,
    load: loadAverage(),
    ...(notes.length ? { notes } : {}),
  };
}
