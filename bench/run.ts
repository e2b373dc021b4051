/**
 * `npm run bench -- [--scenario a,b] [--objects N] [--agents K] [--quick] [--json FILE]`
 *
 * Starts one control plane (etcd, kube-apiserver, kube-controller-manager) and one Git server,
 * runs the selected scenarios against them in a fixed order, and stops everything at the end (also
 * on Ctrl-C: the process groups kill their children). Progress and a readable table go to stderr;
 * one JSON line per scenario goes to stdout (and FILE). A benchmark is not a test: a missed goal
 * is reported (`"pass": false`) but the exit code is 0; only a crash exits non-zero.
 */
import { writeFileSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { startControlPlane } from '../e2e/harness/controlplane.js';
import type { GitServer } from '../e2e/harness/git-server.js';
import { ProcessGroup } from '../e2e/harness/processes.js';
import { HelpRequested, parseArgs, renderTable } from './lib/cli.js';
import type { BenchContext, BenchOptions, ScenarioName, ScenarioResult } from './lib/context.js';
import { disposeRepos } from './lib/fleet.js';
import { RawKube } from './lib/kube-raw.js';
import { loadAverage } from './lib/stats.js';
import { agentMemory, driftRevert } from './scenarios/agent.js';
import { commitToCluster } from './scenarios/commit.js';
import { initialSync, unchangedResync } from './scenarios/engine-sync.js';
import { fanOut } from './scenarios/fanout.js';
import { commitToHealthy } from './scenarios/health.js';
import type { OwnedEngine } from '../src/agent/commands/engine-parts.js';

const RUNNERS: Record<ScenarioName, (ctx: BenchContext) => Promise<ScenarioResult>> = {
  'commit-to-healthy': commitToHealthy,
  'initial-sync': initialSync,
  'unchanged-resync': unchangedResync,
  'agent-memory': agentMemory,
  'drift-revert': driftRevert,
  'commit-to-cluster': commitToCluster,
  'fan-out': fanOut,
};

/**
 * The Git server as its own process (e2e/cli/git-server.js): every fetch the product makes spawns
 * a git http-backend, and a spawn blocks the spawning event loop for milliseconds; in this process
 * it would delay the watch events the bench timestamps.
 */
async function startGitServerProcess(group: ProcessGroup): Promise<GitServer> {
  const root = path.join(group.dir, 'repos');
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'e2e', 'cli', 'git-server.js');
  const proc = group.start('git-server', process.execPath, [script, '--root', root]);
  const deadline = Date.now() + 20_000;
  let url = '';
  while (!url) {
    url = (await readFile(proc.logPath, 'utf8').catch(() => '')).split('\n').find((l) => l.startsWith('http://')) ?? '';
    if (url) break;
    if (proc.exit() || Date.now() > deadline)
      throw new Error(`git-server: did not print its URL:\n${await proc.logTail(20)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url, port: Number(new URL(url).port), root, stop: async () => undefined, start: async () => undefined };
}

async function main(): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return err instanceof HelpRequested ? 0 : 2;
  }
  const started = Date.now();
  const progress = (line: string): void => {
    process.stderr.write(`[bench +${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`);
  };
  progress(
    `scenarios ${options.scenarios.join(', ')}; N=${options.objects}, K=${options.agents}${options.quick ? ' (quick)' : ''}; load ${loadAverage().join(' ')}`,
  );
  if (options.json) writeFileSync(options.json, '');

  const cp = await startControlPlane({ log: (l) => progress(`controlplane: ${l}`) });
  const group = await ProcessGroup.create({ prefix: 'gitops-bench-' });
  const git = await startGitServerProcess(group);
  const raw = new RawKube({ server: cp.server, caPem: cp.caPem, certPem: cp.adminCertPem, keyPem: cp.adminKeyPem }, 8);
  const ctx: BenchContext = { options, cp, kc: cp.kubeConfig(), raw, git, group, progress, shared: new Map() };
  progress(`control plane up (${cp.server}), Git server ${git.url}`);

  const results: ScenarioResult[] = [];
  let crashed = false;
  try {
    for (const name of options.scenarios) {
      progress(`== ${name}`);
      try {
        const result = await RUNNERS[name](ctx);
        results.push(result);
        const line = JSON.stringify(result);
        process.stdout.write(`${line}\n`);
        if (options.json) writeFileSync(options.json, `${line}\n`, { flag: 'a' });
        progress(renderTable([result]));
      } catch (err) {
        crashed = true;
        progress(`${name} crashed: ${(err as Error).stack ?? String(err)}`);
      }
    }
  } finally {
    progress('stopping');
    // GITOPS_BENCH_KEEP_LOGS=DIR keeps the server and agent logs (and their pids) for a post-mortem.
    const keep = process.env.GITOPS_BENCH_KEEP_LOGS;
    if (keep) {
      await mkdir(keep, { recursive: true });
      for (const f of await readdir(group.dir))
        if (f.endsWith('.log')) await copyFile(path.join(group.dir, f), path.join(keep, f));
      progress(`logs kept in ${keep}`);
    }
    (ctx.shared.get('engine') as OwnedEngine | undefined)?.close();
    raw.close();
    await group.dispose(10_000);
    await disposeRepos();
    await cp.stop();
  }
  process.stderr.write(`\n${renderTable(results)}\n`);
  progress(`done in ${((Date.now() - started) / 1000).toFixed(0)} s; load ${loadAverage().join(' ')}`);
  return crashed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
