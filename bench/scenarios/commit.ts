/**
 * Scenario 4: commit-to-cluster. Server, agent and Git server running; each commit changes one
 * field (a ConfigMap's `data.value`). Latency runs from `git push` returning to the watch event
 * that shows the new value live. Two modes: a push webhook (the main server, polling every 10 min,
 * so only the webhook can be what brought it), and polling only, every 1 s (a second server).
 * Baseline: `git fetch` of one new commit from the same Git server, the least any pull-based
 * system must do.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { git, type TestRepo } from '../../e2e/harness/git-repo.js';
import type { ManagedProcess } from '../../e2e/harness/processes.js';
import { collectionPath, meetsGoals, type BenchContext, type ScenarioResult } from '../lib/context.js';
import { benchRepo, sendWebhook, startAgent, startServer, waitForLog, type BenchServer } from '../lib/fleet.js';
import type { RawWatchEvent } from '../lib/kube-raw.js';
import { latencySummary, loadAverage, nowMs } from '../lib/stats.js';
import { C2C_WEBHOOK, c2cObjects, listFile, mainServer } from './agent.js';

const C2C_POLL = 'bench-c2c-poll';
const TIMEOUT_MS = 10_000;

/** Latest value of ConfigMap c2c seen on the watch, with waiters. */
class ValueWatch {
  private seen = new Map<string, number>();
  private wake: (() => void) | undefined;
  onEvent = (e: RawWatchEvent): void => {
    const value = (e.object as { data?: { value?: string } }).data?.value;
    if (e.object.metadata.name === 'c2c' && value !== undefined && !this.seen.has(value)) this.seen.set(value, e.at);
    this.wake?.();
  };
  async when(value: string, timeoutMs: number): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (!this.seen.has(value)) {
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.seen.get(value);
  }
}

/** Commits `value`, pushes, and returns when the push returned (see {@link nowMs}). */
async function commitAndPush(repo: TestRepo, namespace: string, value: string): Promise<number> {
  for (const [file, content] of Object.entries(listFile(c2cObjects(namespace, value))))
    await writeFile(path.join(repo.workDir, file), content);
  await git(repo.workDir, 'add', '--all');
  await git(repo.workDir, 'commit', '--quiet', '-m', value);
  await git(repo.workDir, 'push', '--quiet', 'origin', 'HEAD:refs/heads/main');
  return nowMs();
}

/**
 * Per commit: when it was pushed and seen live (kept with GITOPS_BENCH_KEEP_LOGS, to read beside the server and agent
 * logs).
 */
const timeline: Array<Record<string, unknown>> = [];

async function runMode(
  ctx: BenchContext,
  mode: 'webhook' | 'poll',
  repo: TestRepo,
  server: BenchServer,
  namespace: string,
  fetchClone?: string,
  fetchMs?: number[],
): Promise<{ samples: number[]; missed: number }> {
  const watch = new ValueWatch();
  const stop = await ctx.raw.watch(collectionPath('ConfigMap', namespace), watch.onEvent);
  const samples: number[] = [];
  let missed = 0;
  try {
    for (let i = 1; i <= ctx.options.commits; i++) {
      const value = `${mode}-${i}`;
      const pushed = await commitAndPush(repo, namespace, value);
      // A Git host sends its push webhook right after accepting the push.
      const hook = mode === 'webhook' ? sendWebhook(server, repo.name) : undefined;
      const seenAt = await watch.when(value, TIMEOUT_MS);
      await hook;
      if (seenAt === undefined) missed++;
      timeline.push({
        mode,
        value,
        commit: await git(repo.workDir, 'rev-parse', 'HEAD'),
        pushedAt: new Date(pushed).toISOString(),
        seenAt: seenAt === undefined ? null : new Date(seenAt).toISOString(),
        ms: seenAt === undefined ? null : Math.round(seenAt - pushed),
      });
      samples.push(seenAt === undefined ? TIMEOUT_MS : seenAt - pushed);
      if (fetchClone && fetchMs) {
        const t0 = performance.now();
        await git(fetchClone, 'fetch', '--quiet', 'origin', 'main');
        fetchMs.push(performance.now() - t0);
      }
      // Polling: start the next commit at a random phase of the poll timer.
      await sleep(mode === 'poll' ? Math.random() * 1000 : 50);
      if (i % 10 === 0) ctx.progress(`  ${mode}: ${i} commits`);
    }
  } finally {
    stop();
  }
  return { samples, missed };
}

async function startC2cAgent(
  ctx: BenchContext,
  server: BenchServer,
  agentName: string,
  repo: TestRepo,
): Promise<ManagedProcess> {
  const proc = startAgent(ctx.group, server, agentName, ctx.cp.kubeconfigPath);
  ctx.progress(`gitops-agent ${agentName} started (pid ${proc.pid})`);
  const head = await repo.head();
  await waitForLog(proc, (r) => r.msg === 'applied' && r.commit === head, 60_000, `"applied" for ${head}`);
  return proc;
}

export async function commitToCluster(ctx: BenchContext): Promise<ScenarioResult> {
  const main = await mainServer(ctx);
  const webhookRepo = main.repos.get(C2C_WEBHOOK)!;
  ctx.progress('webhook mode: starting its agent');
  await startC2cAgent(ctx, main.server, 'c2c-webhook', webhookRepo);
  const fetchClone = await mkdtemp(path.join(tmpdir(), 'gitops-bench-fetch-'));
  const fetchMs: number[] = [];
  let webhook: { samples: number[]; missed: number };
  let poll: { samples: number[]; missed: number };
  try {
    await git(fetchClone, 'clone', '--quiet', webhookRepo.url, '.');
    ctx.progress(`webhook mode: ${ctx.options.commits} commits`);
    webhook = await runMode(ctx, 'webhook', webhookRepo, main.server, C2C_WEBHOOK, fetchClone, fetchMs);

    ctx.progress('polling mode: starting a server polling every 1 s (no webhooks) and its agent');
    const pollRepo = await benchRepo(ctx.git, C2C_POLL);
    await pollRepo.commit({ files: listFile(c2cObjects(C2C_POLL, 'v0')), message: 'v0' });
    const pollServer = await startServer(ctx.group, ctx.git, {
      name: 'poll',
      pollInterval: '1s',
      agents: [{ name: 'c2c-poll', manifestProject: C2C_POLL }],
      progress: ctx.progress,
    });
    const agent = await startC2cAgent(ctx, pollServer, 'c2c-poll', pollRepo);
    ctx.progress(`polling mode: ${ctx.options.commits} commits`);
    poll = await runMode(ctx, 'poll', pollRepo, pollServer, C2C_POLL);
    await ctx.group.stop(agent, 10_000);
    await ctx.group.stop(pollServer.proc, 10_000);
  } finally {
    await rm(fetchClone, { recursive: true, force: true });
  }
  const keep = process.env.GITOPS_BENCH_KEEP_LOGS;
  if (keep) {
    await mkdir(keep, { recursive: true });
    await writeFile(
      path.join(keep, 'commit-to-cluster.jsonl'),
      timeline.map((t) => JSON.stringify(t)).join('\n') + '\n',
    );
  }
  const w = latencySummary(webhook.samples);
  const p = latencySummary(poll.samples);
  const f = latencySummary(fetchMs);
  const metrics = {
    webhook_p50_ms: w.p50_ms,
    webhook_p99_ms: w.p99_ms,
    webhook_max_ms: w.max_ms,
    poll_p50_ms: p.p50_ms,
    poll_p99_ms: p.p99_ms,
    poll_max_ms: p.max_ms,
    commits: ctx.options.commits,
    missed: webhook.missed + poll.missed,
  };
  const goals = { webhook_p50_ms: { max: 200 }, webhook_p99_ms: { max: 1000 }, poll_p99_ms: { max: 1500 } };
  const notes = metrics.missed
    ? [`${metrics.missed} commits not live within ${TIMEOUT_MS} ms (counted as ${TIMEOUT_MS} ms)`]
    : [];
  return {
    scenario: 'commit-to-cluster',
    objects: 1,
    metrics,
    baseline: { git_fetch_p50_ms: f.p50_ms, git_fetch_p99_ms: f.p99_ms, poll_interval_ms: 1000 },
    goals,
    pass: meetsGoals(metrics, goals) && notes.length === 0,
    load: loadAverage(),
    ...(notes.length ? { notes } : {}),
  };
}
