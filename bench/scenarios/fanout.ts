/**
 * Scenario 5: fan-out. One `gitops-server serve` with K registered agents (real tokens from the
 * registry's createAgents), all watching one manifest project, connected over TLS from a separate
 * load process (bench/fanout-load.ts). One commit plus its push webhook; the time from the push
 * returning until each agent holds the new `desired` (p50, p99, max), and the server's RSS and
 * CPU seconds from /proc. Baselines: the idle server's RSS before any agent connects, and a
 * `git fetch` of the same commit (the server must fetch before it can send anything).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_AUDIENCE } from '../../src/protocol/jwt.js';
import { git } from '../../e2e/harness/git-repo.js';
import { meetsGoals, type BenchContext, type ScenarioResult } from '../lib/context.js';
import { benchRepo, sendWebhook, startServer } from '../lib/fleet.js';
import { latencySummary, loadAverage, nowMs, procStats, round } from '../lib/stats.js';
import type { LoadReport, LoadStart } from '../fanout-load.js';
import { listFile } from './agent.js';

const LOAD = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fanout-load.js');
const PROJECT = 'bench-fanout';

function manifest(value: string): Record<string, string> {
  return listFile([
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'fanout', namespace: 'default' }, data: { value } },
  ]);
}

/** Next report of `type` from the load process (progress reports go to `onProgress`). */
function nextReport<T extends LoadReport['type']>(
  child: ChildProcess,
  type: T,
  timeoutMs: number,
  onProgress: (r: LoadReport) => void,
): Promise<Extract<LoadReport, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`fanout-load: no "${type}" report within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (m: LoadReport): void => {
      if (m.type === type) {
        cleanup();
        resolve(m as Extract<LoadReport, { type: T }>);
      } else onProgress(m);
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`fanout-load: exited with ${String(code)} before "${type}"`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

export async function fanOut(ctx: BenchContext): Promise<ScenarioResult> {
  const k = ctx.options.agents;
  const repo = await benchRepo(ctx.git, PROJECT);
  await repo.commit({ files: manifest('v0'), message: 'v0' });
  ctx.progress(`creating ${k} agents with createAgents and their config.yaml files`);
  const t0 = performance.now();
  const server = await startServer(ctx.group, ctx.git, {
    name: 'fanout',
    pollInterval: '10m',
    webhookSecret: randomBytes(24).toString('base64url'),
    agents: Array.from({ length: k }, (_, i) => ({ name: `fan-${i}`, manifestProject: PROJECT })),
    progress: ctx.progress,
  });
  ctx.progress(`server up with ${k} agents after ${round((performance.now() - t0) / 1000)} s`);
  const tokensFile = path.join(ctx.group.dir, 'fanout-tokens.json');
  await writeFile(tokensFile, JSON.stringify([...server.tokens.values()]), { mode: 0o600 });
  await sleep(2000);
  const idle = procStats(server.proc.pid);

  const child = fork(LOAD, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
  const killChild = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killChild);
  const fetchClone = await mkdtemp(path.join(tmpdir(), 'gitops-bench-fetch-'));
  try {
    const onProgress = (r: LoadReport): void => {
      if (r.type === 'progress')
        ctx.progress(`  load: ${r.connected}/${k} connected, ${r.withDesired} with desired state, ${r.failed} failed`);
    };
    const start: LoadStart = {
      type: 'start',
      connectUrl: server.connectUrl,
      caPath: server.caPath,
      tokensFile,
      audience: DEFAULT_AUDIENCE,
      concurrency: 50,
    };
    child.send(start);
    const ready = await nextReport(child, 'ready', 600_000, onProgress);
    ctx.progress(
      `${ready.connected} agents connected in ${round(ready.connectSeconds)} s (${ready.failed} failed${ready.errors.length ? `: ${ready.errors.join('; ')}` : ''})`,
    );
    await git(fetchClone, 'clone', '--quiet', repo.url, '.');
    const connectedStats = procStats(server.proc.pid);
    await sleep(1000);

    ctx.progress('one commit + push webhook');
    const before = procStats(server.proc.pid);
    await writeFile(path.join(repo.workDir, 'objects.json'), manifest('v1')['objects.json']);
    await git(repo.workDir, 'commit', '--quiet', '-am', 'v1');
    await git(repo.workDir, 'push', '--quiet', 'origin', 'HEAD:refs/heads/main');
    const pushed = nowMs();
    const commit = await repo.head();
    const done = nextReport(child, 'done', 120_000, onProgress);
    child.send({ type: 'expect', commit, timeoutMs: 60_000 });
    await sendWebhook(server, PROJECT);
    const result = await done;
    const after = procStats(server.proc.pid);

    const f0 = performance.now();
    await git(fetchClone, 'fetch', '--quiet', 'origin', 'main');
    const fetchMs = performance.now() - f0;

    const lat = latencySummary(result.arrivals.map((t) => t - pushed));
    const metrics = {
      ...lat,
      agents: k,
      connected: ready.connected,
      delivered: result.arrivals.length,
      missing: result.missing,
      server_rss_mib: after.rssMib,
      server_peak_rss_mib: after.hwmMib,
      server_cpu_seconds: round(after.cpuSeconds - before.cpuSeconds, 2),
      connect_seconds: round(ready.connectSeconds, 1),
      connect_server_cpu_seconds: round(connectedStats.cpuSeconds - idle.cpuSeconds, 2),
      connected_rss_mib: connectedStats.rssMib,
    };
    const goals = { p99_ms: { max: 2000 }, server_rss_mib: { max: 1024 } };
    const notes: string[] = [];
    if (k < 10_000) notes.push('goals are set for 10,000 agents (--agents 10000)');
    if (result.missing || ready.failed)
      notes.push(`${ready.failed} connections failed, ${result.missing} agents missed the commit`);
    return {
      scenario: 'fan-out',
      objects: 1,
      metrics,
      baseline: { idle_server_rss_mib: idle.rssMib, git_fetch_ms: round(fetchMs) },
      goals,
      pass: meetsGoals(metrics, goals) && result.missing === 0 && ready.failed === 0,
      load: loadAverage(),
      ...(notes.length ? { notes } : {}),
    };
  } finally {
    child.kill('SIGTERM');
    process.off('exit', killChild);
    await rm(fetchClone, { recursive: true, force: true });
    await ctx.group.stop(server.proc, 10_000);
  }
}
