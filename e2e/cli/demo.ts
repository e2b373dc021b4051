/**
 * `npm run demo [-- --keep]`: the seed scenario of DESIGN.md on this machine, with real programs
 * and readable output. It builds (once) and starts a local control plane, a real node (containerd,
 * kubelet, kube-scheduler: e2e/harness/node.ts; root and a few Debian packages, checked first), a
 * local Git server, the server with a self-signed certificate and the agent as in a pod
 * (e2e/harness/stack.ts), then commits, scales by hand, deletes and prunes, printing for each step
 * what was committed, what the server detected, what the agent did, the live replica count, the
 * pods as `kubectl get pods` shows them and how long it took until they were Running and Ready.
 *
 * Without --keep it stops everything and exits 0; a failed or timed-out step prints what it waited
 * for and the last log lines, and exits 1. With --keep it prints how to use kubectl and git
 * against the running stack and stays up until Ctrl-C.
 */
import { Command } from 'commander';
import { formatTable } from '../../src/server/commands/agent.js';
import { ensureControlPlaneBinaries, startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { deploymentReplicas, jsonPatch, kubeRequest } from '../harness/kube.js';
import { assertNodeHost, ensureNodeBinaries, startNode, type TestNode } from '../harness/node.js';
import { formatPodTable, listPods, podRows, waitForReadyPods } from '../harness/pods.js';
import {
  AGENT_NAME,
  CONFIG_PROJECT,
  MANIFEST_PROJECT,
  nginxDeployment,
  startStack,
  type LogRecord,
  type Stack,
} from '../harness/stack.js';
import { waitFor } from '../harness/wait.js';

const program = new Command('demo')
  .description(
    'Run the seed scenario locally: control plane, a real node (root), Git server, gitops-server (self-signed TLS) and gitops-agent',
  )
  .option(
    '--keep',
    'leave everything running afterwards and print how to use kubectl and git against it (Ctrl-C stops)',
  )
  .option('--step-timeout <seconds>', 'how long one step may take before the demo fails', '30')
  .showHelpAfterError();
program.parse();
const opts = program.opts<{ keep?: boolean; stepTimeout: string }>();
const STEP_TIMEOUT_MS = Number(opts.stepTimeout) * 1000;

const NAMESPACE = 'default';
const DEPLOY_PATH = `/apis/apps/v1/namespaces/${NAMESPACE}/deployments/nginx`;
const OBJECT = `Deployment/${NAMESPACE}/nginx`;
const SELECTOR = 'app=nginx';

const out = (line = ''): void => void process.stdout.write(`${line}\n`);
const short = (sha: string): string => sha.slice(0, 12);
const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

let cp: ControlPlane | undefined;
let node: TestNode | undefined;
let stack: Stack | undefined;
let stopping: Promise<void> | undefined;

/** Stops everything once, in reverse start order, then exits with `code`. */
function shutdown(code: number): Promise<void> {
  stopping ??= (async () => {
    const t0 = Date.now();
    await stack?.stop().catch((err: unknown) => out(`stopping the stack: ${(err as Error).message}`));
    await node?.stop().catch((err: unknown) => out(`stopping the node: ${(err as Error).message}`));
    await cp?.stop().catch((err: unknown) => out(`stopping the control plane: ${(err as Error).message}`));
    if (cp || node || stack) out(`stopped everything in ${Date.now() - t0} ms`);
    process.exit(code);
  })();
  return stopping;
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    out('');
    out('interrupted: stopping...');
    void shutdown(opts.keep ? 0 : 130);
  });
}

function replicas(): Promise<number | undefined> {
  return deploymentReplicas(stack!.kubeConfig, NAMESPACE);
}

async function uid(): Promise<string | undefined> {
  const res = await kubeRequest(stack!.kubeConfig, 'GET', DEPLOY_PATH);
  return res.status === 200 ? (res.body as { metadata: { uid: string } }).metadata.uid : undefined;
}

/** Prints the nginx pods as `kubectl get pods -l app=nginx` would, indented under the step. */
async function printPods(): Promise<void> {
  const table = formatPodTable(podRows(await listPods(stack!.kubeConfig, NAMESPACE, SELECTOR), Date.now()));
  out(`    pods     kubectl get pods -l ${SELECTOR}`);
  for (const line of table.split('\n')) out(`             ${line}`);
}

/** Waits until exactly `n` nginx pods exist, all Running and Ready; returns the ms since `since`. */
async function podsReady(since: number, n: number, notNamed: string[] = []): Promise<number> {
  await waitForReadyPods(stack!.kubeConfig, NAMESPACE, SELECTOR, n, STEP_TIMEOUT_MS, notNamed);
  return Date.now() - since;
}

/** Waits until no nginx pod is left (terminated and deleted); returns the ms since `since`. */
async function podsGone(since: number): Promise<number> {
  await waitFor(
    async () => (await listPods(stack!.kubeConfig, NAMESPACE, SELECTOR)).length === 0,
    STEP_TIMEOUT_MS,
    'every nginx pod gone',
    50,
  );
  return Date.now() - since;
}

/** Waits for `check` (polling every 10 ms) and returns the milliseconds since `since`. */
async function until(since: number, check: () => Promise<boolean>, what: string): Promise<number> {
  await waitFor(check, STEP_TIMEOUT_MS, what, 10);
  return Date.now() - since;
}

function serverLine(sha: string): Promise<LogRecord> {
  return stack!.waitForLog(
    stack!.server!,
    (r) => r.msg === 'detected commit' && r.commit === sha,
    STEP_TIMEOUT_MS,
    `the server to detect ${short(sha)}`,
  );
}

function agentLine(sha: string): Promise<LogRecord> {
  return stack!.waitForLog(
    stack!.agent!,
    (r) => r.msg === 'applied' && r.commit === sha,
    STEP_TIMEOUT_MS,
    `the agent to apply ${short(sha)}`,
  );
}

async function listedApplied(sha: string): Promise<void> {
  await waitFor(
    async () =>
      (await stack!.agentList()).find((r) => r.name === AGENT_NAME)?.status?.applied[MANIFEST_PROJECT]?.commit === sha,
    STEP_TIMEOUT_MS,
    `agent list to show ${short(sha)} applied`,
    50,
  );
}

/**
 * One Git step: commit, then what the server and agent logged, the live state and the pods;
 * resolves to [ms from commit to live, ms from commit to the pods settled].
 */
async function gitStep(
  n: number,
  title: string,
  content: string,
  live: () => Promise<boolean>,
  liveText: () => Promise<string>,
  pods: (since: number) => Promise<number>,
): Promise<[number, number]> {
  out(`[${n}] ${title}`);
  const t0 = Date.now();
  const sha = await stack!.commit({ 'manifest.yaml': content }, { message: title });
  out(`    commit   ${short(sha)} pushed to ${MANIFEST_PROJECT} (${Date.now() - t0} ms, webhook sent)`);
  const ms = await until(t0, live, `step ${n}: ${title}`);
  const detected = await serverLine(sha);
  out(`    server   detected commit ${short(sha)} in ${String(detected.project)}`);
  const applied = await agentLine(sha);
  const changes = (applied.changes as string[] | undefined) ?? [];
  out(`    agent    applied ${short(sha)}: ${changes.length ? changes.join(', ') : '(no changes)'}`);
  out(`    live     ${await liveText()}`);
  const podsMs = await pods(t0);
  await printPods();
  await listedApplied(sha);
  out(`    took     ${ms} ms from commit to live, ${podsMs} ms from commit to the pods above`);
  out('');
  return [ms, podsMs];
}

async function main(): Promise<void> {
  const t0 = Date.now();
  out('gitops demo: the seed scenario (DESIGN.md) with real programs on this machine');
  out('');
  out('Starting:');
  // Before minutes of building: a machine that cannot run the node says what it lacks.
  await assertNodeHost().catch((err: unknown) => {
    throw new Error(
      `${(err as Error).message}\nOn Debian, as root: apt-get install -y containerd runc containernetworking-plugins busybox-static nginx-light`,
    );
  });
  const binDir = await ensureControlPlaneBinaries((line) => out(`  build: ${line}`));
  const nodeBinDir = await ensureNodeBinaries((line) => out(`  build: ${line}`));
  cp = await startControlPlane({ binDir, handleSignals: false });
  out(
    `  control plane (etcd, kube-apiserver, kube-controller-manager) at ${cp.server}, ready in ${secs(cp.timings.controllersMs)}`,
  );
  node = await startNode({ kubeconfigPath: cp.kubeconfigPath, binDir: nodeBinDir, handleSignals: false });
  out(
    `  node ${node.name} (containerd, kubelet, kube-scheduler) Ready in ${secs(node.timings.readyMs)}, images pause and nginx:1.27 imported (${node.dir})`,
  );
  stack = await startStack({
    kubeConfig: cp.kubeConfig(),
    installSuffix: '',
    logLevel: 'info',
    handleSignals: false,
    log: (line) => out(`  ${line}`),
  });
  out(`  everything up in ${secs(Date.now() - t0)}`);
  out('');

  const timings: Array<[string, number]> = [];
  const to = (n: number) => async (): Promise<boolean> => (await replicas()) === n;
  const liveText = async (): Promise<string> => `${OBJECT} has ${String(await replicas())} replicas`;

  const ready =
    (n: number) =>
    (since: number): Promise<number> =>
      podsReady(since, n);
  const [live2, pods2] = await gitStep(
    1,
    'nginx with replicas: 2',
    nginxDeployment(NAMESPACE, 2),
    to(2),
    liveText,
    ready(2),
  );
  timings.push(['replicas: 2 (new Deployment)', live2], ['  ... 2 pods Running and Ready', pods2]);
  const [live3, pods3] = await gitStep(
    2,
    'nginx with replicas: 3',
    nginxDeployment(NAMESPACE, 3),
    to(3),
    liveText,
    ready(3),
  );
  timings.push(['replicas: 2 -> 3', live3], ['  ... 3 pods Running and Ready', pods3]);

  out('[3] someone scales it by hand to 5 (JSON patch, field manager "kubectl-by-hand")');
  let t = Date.now();
  const patched = await jsonPatch(
    stack.kubeConfig,
    DEPLOY_PATH,
    [{ op: 'replace', path: '/spec/replicas', value: 5 }],
    'kubectl-by-hand',
  );
  if (patched.status !== 200) throw new Error(`step 3: the patch failed with HTTP ${patched.status}`);
  let ms = await until(t, to(3), 'step 3: replicas back to 3');
  const reverted = await stack.waitForLog(
    stack.agent!,
    (r) => r.msg === 'drift reverted' && r.object === OBJECT,
    STEP_TIMEOUT_MS,
    'the agent to log the revert',
  );
  out(`    agent    drift reverted on ${OBJECT} (changed by ${String(reverted.manager)})`);
  out(`    live     ${await liveText()}`);
  // Any pods the ReplicaSet started for the 5 are stopped again.
  let podsMs = await podsReady(t, 3);
  await printPods();
  out(`    took     ${ms} ms from the edit back to 3, ${podsMs} ms until exactly 3 pods run`);
  out('');
  timings.push(['hand-scaled to 5 -> back to 3', ms], ['  ... exactly 3 pods again', podsMs]);

  out(`[4] someone deletes ${OBJECT}`);
  const before = await uid();
  const oldPods = (await listPods(stack.kubeConfig, NAMESPACE, SELECTOR)).map((p) => p.metadata.name);
  t = Date.now();
  const deleted = await kubeRequest(stack.kubeConfig, 'DELETE', DEPLOY_PATH);
  if (deleted.status !== 200) throw new Error(`step 4: the delete failed with HTTP ${deleted.status}`);
  ms = await until(
    t,
    async () => {
      const u = await uid();
      return u !== undefined && u !== before;
    },
    'step 4: the Deployment recreated',
  );
  await stack
    .waitForLog(
      stack.agent!,
      (r) => r.msg === 'drift reverted' && r.action === 'recreated' && r.object === OBJECT,
      STEP_TIMEOUT_MS,
      'the agent to log the recreation',
    )
    .then(
      () => out(`    agent    ${OBJECT} recreated from Git`),
      () => out(`    agent    ${OBJECT} recreated from Git (no log line found)`),
    );
  out(`    live     ${await liveText()}`);
  podsMs = await podsReady(t, 3, oldPods);
  await printPods();
  out(`    took     ${ms} ms from the delete to a new ${OBJECT}, ${podsMs} ms to its 3 new pods Running and Ready`);
  out('');
  timings.push(['deleted -> recreated', ms], ['  ... 3 new pods Running and Ready', podsMs]);

  const [pruned, gone] = await gitStep(
    5,
    'remove nginx from manifest.yaml',
    '',
    async () => (await replicas()) === undefined,
    async () => `${OBJECT} is gone`,
    podsGone,
  );
  timings.push(['removed from Git -> pruned', pruned], ['  ... every pod gone', gone]);

  out('gitops-server agent list:');
  for (const line of formatTable(await stack.agentList())
    .trimEnd()
    .split('\n'))
    out(`  ${line}`);
  out('');
  out('Timings:');
  for (const [what, value] of timings) out(`  ${what.padEnd(36)} ${String(value).padStart(5)} ms`);
  out('');

  if (!opts.keep) {
    out('All steps passed. Stopping (run with --keep to leave everything running).');
    return shutdown(0);
  }
  const kubeconfig = cp.kubeconfigPath;
  out('Everything keeps running. Try:');
  out(`  export KUBECONFIG=${kubeconfig}`);
  out('  kubectl get deployments,pods,leases -A');
  out(`  git clone ${stack.gitServer.url}/${MANIFEST_PROJECT}.git && cd ${MANIFEST_PROJECT}`);
  out('  # put a Deployment into manifest.yaml, git commit -am ..., git push: the server polls every 5 s');
  out(`  node dist/bin/gitops-server.js agent list --state-dir ${stack.serverStateDir}`);
  out(`  config project: ${stack.gitServer.url}/${CONFIG_PROJECT}.git`);
  out(`  logs: ${stack.dir}/*.log (server, agent), ${cp.dir}/*.log (control plane), ${node.dir} (node)`);
  out('');
  out('Press Ctrl-C to stop everything.');
  await new Promise<void>(() => {});
}

main().catch(async (err: unknown) => {
  out('');
  out(`demo FAILED: ${err instanceof Error ? err.message : String(err)}`);
  if (stack) out(await stack.logTails(15));
  await shutdown(1);
});
