/**
 * `gitops-agent run` end to end: the built agent (dist/bin/gitops-agent.js) as a real process,
 * connected over TLS to the real `gitops-server serve` process, which reads the real Git server,
 * applying to the real API server. Each scenario has its own agent (its own config.yaml drift
 * settings), manifest project and namespace.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { KubeConfig } from '@kubernetes/client-node';
import { createAgent } from '../../src/server/registry.js';
import { createRepo, type TestRepo } from '../harness/git-repo.js';
import { startGitServer, type GitServer } from '../harness/git-server.js';
import {
  deploymentReplicas,
  freshNamespace,
  jsonPatch,
  kubeRequest,
  testKubeConfig,
  TEST_ENV,
  waitFor,
  type TestNamespace,
} from '../harness/kube.js';
import { readLogRecords, type LogRecord } from '../harness/log-records.js';
import { nginxWithSettings } from '../harness/stack.js';
import { ProcessGroup, type ManagedProcess } from '../harness/processes.js';
import { writePodCredentials } from '../harness/pod-credentials.js';

const SERVER_CLI = new URL('../../dist/bin/gitops-server.js', import.meta.url).pathname;
const AGENT_CLI = new URL('../../dist/bin/gitops-agent.js', import.meta.url).pathname;

let group: ProcessGroup;
let kc: KubeConfig;
let gitServer: GitServer;
let configRepo: TestRepo;
let server: ManagedProcess | undefined;
let connectUrl = '';
let caPath = '';
const tokens: Record<string, string> = {};
const repos: Record<string, TestRepo> = {};
const namespaces: TestNamespace[] = [];

const SCENARIOS: Record<string, string> = {
  'agent-apply': '',
  'agent-ignore': `  drift:
    ignore:
    - kind: Deployment
      paths: ['/spec/replicas']
`,
  'agent-detect': `  drift:
    mode: detect
`,
  'agent-fight': '',
  'agent-ha': '',
  'agent-pod': '',
  // A project key, not a section: the control plane has no node, so the Deployment times out.
  'agent-health': `    reconcile_timeout: 3s
`,
};

function configYaml(name: string): string {
  return `gitops:
  manifest_projects:
  - id: p-${name}
    paths:
    - glob: '/**/*.yaml'
${SCENARIOS[name]}`;
}

const manifests = nginxWithSettings;
const logs = (proc: ManagedProcess): Promise<LogRecord[]> => readLogRecords(proc.logPath);

async function waitForLog(
  proc: ManagedProcess,
  match: (r: LogRecord) => boolean,
  timeoutMs = 15_000,
  what = 'a log line',
): Promise<LogRecord> {
  return waitFor(
    async () => {
      if (proc.exit())
        throw new Error(`${proc.name} exited ${JSON.stringify(proc.exit())}:\n${await proc.logTail(40)}`);
      return (await logs(proc)).find(match);
    },
    timeoutMs,
    `${proc.name}: ${what}`,
    100,
  );
}

let serverSeq = 0;
async function startServer(): Promise<void> {
  server = group.start(`server-${serverSeq++}`, process.execPath, [
    SERVER_CLI,
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--state-dir',
    path.join(group.dir, 'server-state'),
    '--tls-self-signed',
    '--git-base-url',
    gitServer.url,
    '--poll-interval',
    '1s',
    '--heartbeat-interval',
    '2s',
    '--log-level',
    'debug',
  ]);
  const listening = await waitForLog(server, (r) => r.msg === 'server listening', 20_000, 'listening');
  connectUrl = String(listening.connect);
  caPath = String(listening.caCert);
}

interface Agent {
  proc: ManagedProcess;
  stateDir: string;
}

let agentSeq = 0;
/** Starts an agent with the admin kubeconfig, or "as in a pod" when `pod` gives its environment. */
function startAgent(
  name: string,
  options: { stateDir?: string; leaseNamespace?: string; pod?: Record<string, string> },
): Agent {
  const stateDir = options.stateDir ?? path.join(group.dir, `${name}-state-${agentSeq}`);
  const kube = options.pod ? [] : ['--kubeconfig', process.env[TEST_ENV.kubeconfig]!];
  const lease = options.leaseNamespace ? ['--lease-namespace', options.leaseNamespace] : [];
  const env: NodeJS.ProcessEnv = { ...process.env, ...(options.pod ?? {}) };
  delete env.KUBECONFIG;
  const proc = group.start(
    `${name}-${agentSeq++}`,
    process.execPath,
    [
      AGENT_CLI,
      'run',
      '--server-url',
      connectUrl,
      '--token-file',
      path.join(group.dir, `${name}.token`),
      '--ca-file',
      caPath,
      ...kube,
      '--state-dir',
      stateDir,
      '--listen',
      '127.0.0.1:0',
      ...lease,
      '--log-level',
      'debug',
    ],
    { env },
  );
  return { proc, stateDir };
}

async function stopAgent(agent: Agent): Promise<void> {
  await group.stop(agent.proc, 10_000);
}

const deployPath = (ns: string): string => `/apis/apps/v1/namespaces/${ns}/deployments/nginx`;
const configMapPath = (ns: string): string => `/api/v1/namespaces/${ns}/configmaps/settings`;

const replicas = (ns: string): Promise<number | undefined> => deploymentReplicas(kc, ns);

/** Time from now until `check` holds, polling every 10 ms. */
async function timeUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  await waitFor(check, timeoutMs, what, 10);
  return Date.now() - started;
}

async function namespace(prefix: string): Promise<string> {
  const ns = await freshNamespace(prefix, kc);
  namespaces.push(ns);
  return ns.name;
}

beforeAll(async () => {
  kc = testKubeConfig();
  group = await ProcessGroup.create({ prefix: 'gitops-agent-e2e-' });
  gitServer = await startGitServer({ root: path.join(group.dir, 'repos') });
  configRepo = await createRepo(gitServer, 'kubernetes-agent');
  const files: Record<string, string> = {};
  for (const name of Object.keys(SCENARIOS)) {
    files[`.gitlab/agents/${name}/config.yaml`] = configYaml(name);
    repos[name] = await createRepo(gitServer, `p-${name}`);
    await repos[name].commit({ files: { 'README.md': 'manifests\n' } });
  }
  await configRepo.commit({ files });
  await mkdir(path.join(group.dir, 'server-state'), { recursive: true });
  for (const name of Object.keys(SCENARIOS)) {
    const { token } = await createAgent(path.join(group.dir, 'server-state'), name, 'kubernetes-agent');
    tokens[name] = token;
    await writeFile(path.join(group.dir, `${name}.token`), `${token}\n`, { mode: 0o600 });
  }
  await startServer();
}, 60_000);

afterAll(async () => {
  // GITOPS_E2E_KEEP_LOGS=DIR keeps the server and agent logs for a post-mortem.
  const keep = process.env.GITOPS_E2E_KEEP_LOGS;
  if (keep && group) {
    await mkdir(keep, { recursive: true });
    for (const f of await readdir(group.dir))
      if (f.endsWith('.log')) await copyFile(path.join(group.dir, f), path.join(keep, f));
  }
  await group?.dispose(10_000);
  await gitServer?.stop();
  for (const r of [configRepo, ...Object.values(repos)]) await r?.dispose();
  for (const ns of namespaces) await ns.delete().catch(() => undefined);
}, 60_000);

describe('gitops-agent run', () => {
  let ns = '';
  let agent: Agent;

  it('applies a pushed commit and the next one, logging the sha and each object action', async () => {
    ns = await namespace('agent-apply');
    agent = startAgent('agent-apply', { leaseNamespace: ns });
    await waitForLog(agent.proc, (r) => r.msg === 'connected to server', 15_000, 'connected');
    const first = await repos['agent-apply'].commit({ files: { 'manifest.yaml': manifests(ns, 2) } });
    await waitFor(async () => (await replicas(ns)) === 2, 20_000, 'Deployment with 2 replicas');
    await waitForLog(agent.proc, (r) => r.msg === 'applied' && r.commit === first, 10_000, `applied ${first}`);

    const second = await repos['agent-apply'].commit({ files: { 'manifest.yaml': manifests(ns, 3) } });
    await waitFor(async () => (await replicas(ns)) === 3, 20_000, 'Deployment with 3 replicas');
    const line = await waitForLog(
      agent.proc,
      (r) => r.msg === 'applied' && r.commit === second,
      10_000,
      `applied ${second}`,
    );
    expect(line.changes).toEqual([`Deployment/${ns}/nginx configured`]);
    expect(JSON.stringify(line)).toContain(`Deployment/${ns}/nginx configured`);
    await waitForLog(
      server!,
      (r) => r.msg === 'agent status' && r.commit === second && r.result === 'applied',
      10_000,
      'status at the server',
    );
  });

  it('reverts a field edited by another field manager within a second and reports who changed it', async () => {
    const patched = await jsonPatch(
      kc,
      deployPath(ns),
      [{ op: 'replace', path: '/spec/replicas', value: 7 }],
      'manual-edit',
    );
    expect(patched.status).toBe(200);
    const ms = await timeUntil(async () => (await replicas(ns)) === 3, 5000, 'replicas back to 3');
    expect(ms).toBeLessThan(1000);
    const report = await waitForLog(
      server!,
      (r) => r.msg === 'agent drift' && r.object === `Deployment/${ns}/nginx`,
      5000,
      'drift report at the server',
    );
    expect(report).toMatchObject({ action: 'reverted', manager: 'manual-edit' });
    const events = await waitFor(
      async () => {
        const res = await kubeRequest(kc, 'GET', `/api/v1/namespaces/${ns}/events`);
        const items = (
          res.body as { items: Array<{ reason: string; message: string; involvedObject: { name: string } }> }
        ).items;
        return items.find((e) => e.reason === 'DriftReverted' && e.involvedObject.name === 'nginx');
      },
      5000,
      'a DriftReverted event',
    );
    expect(events.message).toContain('manual-edit');
  });

  it('recreates a managed object that was deleted', async () => {
    const before = (await kubeRequest(kc, 'GET', configMapPath(ns))).body as { metadata: { uid: string } };
    expect((await kubeRequest(kc, 'DELETE', configMapPath(ns))).status).toBe(200);
    await waitFor(
      async () => {
        const res = await kubeRequest(kc, 'GET', configMapPath(ns));
        return res.status === 200 && (res.body as { metadata: { uid: string } }).metadata.uid !== before.metadata.uid;
      },
      5000,
      'the ConfigMap recreated',
    );
    await waitForLog(
      server!,
      (r) => r.msg === 'agent drift' && r.object === `ConfigMap/${ns}/settings` && r.action === 'recreated',
      5000,
      'recreated report',
    );
  });

  it('keeps reverting drift while the server is down', async () => {
    await group.stop(server!, 10_000);
    await waitForLog(
      agent.proc,
      (r) =>
        r.msg === 'disconnected from server' ||
        r.msg === 'connection to server lost' ||
        r.msg === 'cannot reach server',
      10_000,
      'disconnect noticed',
    );
    await jsonPatch(kc, deployPath(ns), [{ op: 'replace', path: '/spec/replicas', value: 9 }], 'manual-edit');
    const ms = await timeUntil(async () => (await replicas(ns)) === 3, 5000, 'replicas back to 3 with the server down');
    expect(ms).toBeLessThan(1000);
  });

  it('keeps enforcing the last desired state after a restart with the server still down', async () => {
    await stopAgent(agent);
    agent = startAgent('agent-apply', { leaseNamespace: ns, stateDir: agent.stateDir });
    await waitForLog(
      agent.proc,
      (r) => r.msg === 'restored desired state from the state dir',
      15_000,
      'state restored',
    );
    const health = await waitForLog(
      agent.proc,
      (r) => r.msg === 'health and metrics listening',
      15_000,
      'health endpoint',
    );
    const ready = await fetch(`${String(health.url)}/readyz`);
    expect(ready.status).toBe(200);
    await waitForLog(agent.proc, (r) => r.msg === 'applied', 20_000, 'the restored state applied');
    await jsonPatch(kc, deployPath(ns), [{ op: 'replace', path: '/spec/replicas', value: 8 }], 'manual-edit');
    const ms = await timeUntil(async () => (await replicas(ns)) === 3, 5000, 'replicas back to 3 after the restart');
    expect(ms).toBeLessThan(1000);
    const metrics = await (await fetch(`${String(health.url)}/metrics`)).text();
    expect(metrics).toMatch(/gitops_agent_drift_total\{action="reverted"\} [1-9]/);
    await stopAgent(agent);
    await startServer();
  }, 90_000);
});

describe('drift settings from config.yaml', () => {
  it('leaves a field listed in drift.ignore alone and still reverts the others', async () => {
    const ns = await namespace('agent-ignore');
    const agent = startAgent('agent-ignore', { leaseNamespace: ns });
    await repos['agent-ignore'].commit({ files: { 'manifest.yaml': manifests(ns, 2) } });
    await waitFor(async () => (await replicas(ns)) === 2, 20_000, 'Deployment applied');
    await waitForLog(agent.proc, (r) => r.msg === 'applied', 10_000, 'applied');
    await jsonPatch(kc, deployPath(ns), [{ op: 'replace', path: '/spec/replicas', value: 6 }], 'hpa');
    await jsonPatch(kc, configMapPath(ns), [{ op: 'replace', path: '/data/value', value: 'edited' }], 'manual-edit');
    await waitFor(
      async () =>
        ((await kubeRequest(kc, 'GET', configMapPath(ns))).body as { data: { value: string } }).data.value === 'one',
      5000,
      'ConfigMap reverted',
    );
    await new Promise((r) => setTimeout(r, 1000));
    expect(await replicas(ns)).toBe(6);
    await stopAgent(agent);
  });

  it('in detect mode reports drift with the manager and reverts nothing', async () => {
    const ns = await namespace('agent-detect');
    const agent = startAgent('agent-detect', { leaseNamespace: ns });
    await repos['agent-detect'].commit({ files: { 'manifest.yaml': manifests(ns, 2) } });
    await waitFor(async () => (await replicas(ns)) === 2, 20_000, 'Deployment applied');
    await waitForLog(agent.proc, (r) => r.msg === 'applied', 10_000, 'applied');
    await jsonPatch(kc, deployPath(ns), [{ op: 'replace', path: '/spec/replicas', value: 4 }], 'manual-edit');
    const report = await waitForLog(
      server!,
      (r) => r.msg === 'agent drift' && r.object === `Deployment/${ns}/nginx`,
      5000,
      'detected report',
    );
    expect(report).toMatchObject({ action: 'detected', manager: 'manual-edit' });
    await new Promise((r) => setTimeout(r, 1000));
    expect(await replicas(ns)).toBe(4);
    await stopAgent(agent);
  });

  it('backs off from a controller that keeps changing a field and reports the fight with its name', async () => {
    const ns = await namespace('agent-fight');
    const agent = startAgent('agent-fight', { leaseNamespace: ns });
    await repos['agent-fight'].commit({ files: { 'manifest.yaml': manifests(ns, 2) } });
    await waitFor(async () => (await replicas(ns)) === 2, 20_000, 'Deployment applied');
    await waitForLog(agent.proc, (r) => r.msg === 'applied', 10_000, 'applied');
    const fightStarted = Date.now();
    let edits = 0;
    // An edit every 150 ms, a few in flight: on a loaded 2-core machine one patch can take 850 ms,
    // and edits awaited one after the other then fell to 6-11 in the 6 s (with or without health).
    const inFlight = new Set<Promise<unknown>>();
    while (Date.now() - fightStarted < 6000) {
      if (inFlight.size < 4) {
        const edit = jsonPatch(
          kc,
          deployPath(ns),
          [{ op: 'replace', path: '/spec/replicas', value: 10 + (edits % 2) }],
          'fighter',
        ).finally(() => inFlight.delete(edit));
        inFlight.add(edit);
        edits++;
      }
      await new Promise((r) => setTimeout(r, 150));
    }
    await Promise.all(inFlight);
    const reverts = (await logs(agent.proc)).filter(
      (r) => r.msg === 'drift reverted' || r.msg === 'drift fight: reverted, backing off',
    );
    // Faster than the agent's first hold (2 s) by far, so the hold is what stops the reverts
    // (40 edits on an idle machine; 20 measured at load 16, the test's own timers lagging).
    expect(edits).toBeGreaterThanOrEqual(15);
    expect(reverts.length).toBeGreaterThanOrEqual(5);
    expect(reverts.length).toBeLessThanOrEqual(9);
    const fight = await waitForLog(
      server!,
      (r) => r.msg === 'agent drift' && r.action === 'fight' && String(r.object).includes(ns),
      5000,
      'fight report',
    );
    expect(fight.manager).toBe('fighter');
    await stopAgent(agent);
  });
});

describe('health after an apply', () => {
  it('waits reconcile_timeout for health, logs the commit timed out naming the Deployment once, and does not re-apply', async () => {
    const ns = await namespace('agent-health');
    const agent = startAgent('agent-health', { leaseNamespace: ns });
    const listening = await waitForLog(agent.proc, (r) => r.msg === 'health and metrics listening', 15_000, 'metrics');
    await waitForLog(agent.proc, (r) => r.msg === 'connected to server', 15_000, 'connected');
    const commit = await repos['agent-health'].commit({ files: { 'manifest.yaml': manifests(ns, 1) } });
    const applied = await waitForLog(agent.proc, (r) => r.msg === 'applied' && r.commit === commit, 20_000, 'applied');
    const timedOut = await waitForLog(
      agent.proc,
      (r) => r.msg === 'commit timed out' && r.commit === commit,
      20_000,
      'commit timed out',
    );
    expect(timedOut.project).toBe('p-agent-health');
    expect(timedOut.level).toBe('warn');
    // The ConfigMap is current at once; the Deployment (no node here: no pod ever runs) is what it waits for.
    expect(timedOut.notCurrent).toEqual([expect.stringMatching(new RegExp(`^Deployment/${ns}/nginx in_progress: `))]);
    expect(Number(timedOut.waitedMs)).toBeGreaterThanOrEqual(3_000);
    expect(Number(timedOut.waitedMs)).toBeLessThan(10_000);
    expect(Date.parse(String(timedOut.time)) - Date.parse(String(applied.time))).toBeGreaterThanOrEqual(2_900);

    const metrics = await (await fetch(`${String(listening.url)}/metrics`)).text();
    expect(metrics).toContain('gitops_agent_commit_health{project="p-agent-health",result="timed_out"} 1');
    expect(metrics).toContain('gitops_agent_objects{project="p-agent-health",health="in_progress"} 1');
    expect(metrics).toContain('gitops_agent_objects{project="p-agent-health",health="current"} 1');

    // The same verdict at the server (protocol 2): `agent list` has it per project.
    const listed = await waitFor(
      async () => {
        const { stdout } = await promisify(execFile)(process.execPath, [
          SERVER_CLI,
          'agent',
          'list',
          '-o',
          'json',
          '--state-dir',
          path.join(group.dir, 'server-state'),
        ]);
        const rows = JSON.parse(stdout) as Array<{ name: string; status?: { health?: Record<string, unknown> } }>;
        const health = rows.find((r) => r.name === 'agent-health')?.status?.health?.['p-agent-health'] as
          { result?: string } | undefined;
        return health?.result === 'timed_out' ? health : undefined;
      },
      10_000,
      'timed_out in agent list',
    );
    expect(listed).toMatchObject({ result: 'timed_out', notCurrent: 1, total: 2 });

    // Timed out is not failed: no retry loop, and the result is logged once.
    await new Promise((r) => setTimeout(r, 3_000));
    const records = await logs(agent.proc);
    expect(records.filter((r) => r.msg === 'applied' && r.commit === commit)).toHaveLength(1);
    expect(records.filter((r) => r.msg === 'commit timed out')).toHaveLength(1);
    expect(records.filter((r) => r.msg === 'apply failed')).toEqual([]);

    // A newer commit whose Deployment its controller gives up on (no node: no pod ever runs):
    // degraded with the controller's reason, and a HealthFailed Event on the Deployment itself.
    const stuck = await repos['agent-health'].commit({ files: { 'manifest.yaml': stuckDeployment(ns) } });
    const degraded = await waitForLog(
      agent.proc,
      (r) => r.msg === 'commit degraded' && r.commit === stuck,
      30_000,
      'commit degraded',
    );
    expect(degraded.notCurrent).toEqual([
      expect.stringMatching(new RegExp(`^Deployment/${ns}/stuck failed: ProgressDeadlineExceeded: `)),
    ]);
    const uid = (await kubeRequest(kc, 'GET', `/apis/apps/v1/namespaces/${ns}/deployments/stuck`)).body as {
      metadata: { uid: string };
    };
    const event = await waitFor(
      async () => {
        const list = (
          await kubeRequest(kc, 'GET', `/api/v1/namespaces/${ns}/events?fieldSelector=reason%3DHealthFailed`)
        ).body as { items: Array<Record<string, unknown>> };
        return list.items[0];
      },
      15_000,
      'the HealthFailed Event',
    );
    expect(event).toMatchObject({
      type: 'Warning',
      reason: 'HealthFailed',
      involvedObject: { kind: 'Deployment', name: 'stuck', namespace: ns, uid: uid.metadata.uid },
      reportingComponent: 'gitops-agent',
    });
    expect(String(event.message)).toMatch(
      new RegExp(`^Failed after applying commit ${stuck.slice(0, 12)}: ProgressDeadlineExceeded: `),
    );
    await stopAgent(agent);
  }, 120_000);
});

/** A Deployment that its controller declares failed after 1 s without progress. */
function stuckDeployment(ns: string): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: stuck
  namespace: ${ns}
spec:
  replicas: 1
  progressDeadlineSeconds: 1
  selector:
    matchLabels: {app: stuck}
  template:
    metadata:
      labels: {app: stuck}
    spec:
      containers:
      - name: web
        image: registry.invalid/web:1
`;
}

describe('in a pod', () => {
  it('runs on its ServiceAccount credentials and takes its Lease in the pod namespace', async () => {
    const ns = await namespace('agent-pod');
    expect(
      (
        await kubeRequest(kc, 'POST', `/api/v1/namespaces/${ns}/serviceaccounts`, {
          metadata: { name: 'gitops-agent' },
        })
      ).status,
    ).toBe(201);
    const binding = `gitops-agent-e2e-${ns}`;
    expect(
      (
        await kubeRequest(kc, 'POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
          metadata: { name: binding },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
          subjects: [{ kind: 'ServiceAccount', name: 'gitops-agent', namespace: ns }],
        })
      ).status,
    ).toBe(201);
    const creds = await writePodCredentials(kc, {
      namespace: ns,
      serviceAccount: 'gitops-agent',
      dir: path.join(group.dir, 'pod'),
    });
    try {
      const agent = startAgent('agent-pod', {
        pod: { ...creds.env, GITOPS_AGENT_SERVICEACCOUNT_DIR: creds.serviceAccountDir },
      });
      await waitForLog(agent.proc, (r) => r.msg === 'became leader', 15_000, 'leader');
      const lease = await kubeRequest(kc, 'GET', `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`);
      expect((lease.body as { items: unknown[] }).items).toHaveLength(1);
      await repos['agent-pod'].commit({ files: { 'manifest.yaml': manifests(ns, 2) } });
      await waitFor(async () => (await replicas(ns)) === 2, 20_000, 'Deployment applied by the pod agent');
      await jsonPatch(kc, deployPath(ns), [{ op: 'replace', path: '/spec/replicas', value: 4 }], 'manual-edit');
      await waitFor(async () => (await replicas(ns)) === 2, 5000, 'drift reverted by the pod agent');
      await stopAgent(agent);
    } finally {
      await kubeRequest(kc, 'DELETE', `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${binding}`);
      await creds.remove();
    }
  });
});

describe('two replicas with one token', () => {
  it('lets only the Lease holder apply, and the standby takes over when the leader dies', async () => {
    const ns = await namespace('agent-ha');
    const a = startAgent('agent-ha', { leaseNamespace: ns });
    const b = startAgent('agent-ha', { leaseNamespace: ns });
    await waitForLog(a.proc, (r) => r.msg === 'connected to server', 15_000, 'a connected');
    await waitForLog(b.proc, (r) => r.msg === 'connected to server', 15_000, 'b connected');
    await waitFor(
      async () =>
        (await logs(a.proc)).some((r) => r.msg === 'became leader') ||
        (await logs(b.proc)).some((r) => r.msg === 'became leader'),
      10_000,
      'a leader',
    );
    const [leader, standby] = (await logs(a.proc)).some((r) => r.msg === 'became leader') ? [a, b] : [b, a];

    const commit = await repos['agent-ha'].commit({ files: { 'manifest.yaml': manifests(ns, 2) } });
    await waitFor(async () => (await replicas(ns)) === 2, 20_000, 'Deployment applied');
    await waitForLog(leader.proc, (r) => r.msg === 'applied' && r.commit === commit, 10_000, 'leader applied');
    await waitForLog(
      standby.proc,
      (r) => r.msg === 'desired state received' && r.commit === commit,
      10_000,
      'standby got the desired state too',
    );
    expect((await logs(standby.proc)).filter((r) => r.msg === 'applied' || r.msg === 'became leader')).toEqual([]);

    process.kill(leader.proc.pid, 'SIGKILL');
    await leader.proc.exited;
    await waitForLog(standby.proc, (r) => r.msg === 'became leader', 30_000, 'standby takes over');
    await waitForLog(standby.proc, (r) => r.msg === 'applied' && r.commit === commit, 10_000, 'new leader applied');
    await jsonPatch(kc, deployPath(ns), [{ op: 'replace', path: '/spec/replicas', value: 5 }], 'manual-edit');
    await waitFor(async () => (await replicas(ns)) === 2, 5000, 'drift reverted by the new leader');
    await stopAgent(standby);
  }, 90_000);
});
