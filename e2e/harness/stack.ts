/**
 * The whole product running as a user would run it, for the seed scenario, the fault tests and
 * `npm run demo`: a Git server with the config project `kubernetes-agent` and the manifest project
 * `gitops-project` (DESIGN.md, "The seed scenario"), `gitops-server serve` as a real process with
 * self-signed TLS and a webhook secret, the agent record made by `gitops-server agent create`, the
 * agent's install from manifests/agent applied to the real API server, and `gitops-agent run`
 * started as a pod would be: in-cluster configuration from a ServiceAccount token (TokenRequest)
 * bound only to the RBAC in manifests/, so a missing rule there fails the scenario.
 *
 * Several stacks may share one control plane (jest runs test files in parallel): the install's
 * namespace and cluster-scoped names get a per-stack suffix, and tests name a default namespace
 * of their own so the agents' inventories never meet.
 *
 * Every wait is on a real condition (a log line, an API object, a status file), never a sleep.
 */
import { execFile } from 'node:child_process';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { KubeConfig } from '@kubernetes/client-node';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import type { AgentListRow } from '../../src/server/registry.js';
import { repoRoot } from './controlplane.js';
import { createRepo, type TestRepo } from './git-repo.js';
import { startGitServer, type GitServer } from './git-server.js';
import { kubeRequest } from './kube.js';
import { readLogRecords, type LogRecord } from './log-records.js';
import { writePodCredentials, type PodCredentials } from './pod-credentials.js';
import { ProcessGroup, type ManagedProcess, type ProcessExit } from './processes.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);

export { readLogRecords, type LogRecord };

/** Names from DESIGN.md's seed scenario. */
export const AGENT_NAME = 'agent1';
export const CONFIG_PROJECT = 'kubernetes-agent';
export const MANIFEST_PROJECT = 'gitops-project';
/** The install's namespace and ServiceAccount in manifests/agent (before the per-stack suffix). */
const INSTALL_NAMESPACE = 'gitops-agent';
const SERVICE_ACCOUNT = 'gitops-agent';

export interface StackOptions {
  /** Admin credentials for the control plane (installing manifests/, TokenRequest). */
  kubeConfig: KubeConfig;
  /** Progress lines for people (the demo); silent by default. */
  log?: (line: string) => void;
  /**
   * Suffix for the install's namespace and cluster-scoped names (`gitops-agent-<suffix>`), so stacks
   * can share a cluster; a random one by default, '' keeps the names of manifests/agent.
   */
  installSuffix?: string;
  /** `default_namespace` of the manifest project in config.yaml; omitted (= `default`) when unset. */
  defaultNamespace?: string;
  /** Extra lines under the manifest project in config.yaml, already indented by 4 spaces. */
  projectConfig?: string;
  /** Server poll interval (webhooks fetch at once); default 5s. */
  pollInterval?: string;
  /** Log level of both programs; default debug. */
  logLevel?: string;
  /** Extra `gitops-agent run` arguments (e.g. `--resync-interval 0`). */
  agentArgs?: string[];
  /** See ProcessGroupOptions.handleSignals (the demo handles Ctrl-C itself). */
  handleSignals?: boolean;
}

export interface CommitOptions {
  message?: string;
  /** Fire the GitLab-style push webhook after the push (default true; a failure is only logged). */
  webhook?: boolean;
}

/** A running stack; see the module comment. */
export interface Stack {
  /** Temporary folder with every log, state dir and credential; deleted by `stop()`. */
  readonly dir: string;
  readonly kubeConfig: KubeConfig;
  readonly gitServer: GitServer;
  readonly configRepo: TestRepo;
  readonly manifestRepo: TestRepo;
  /** Namespace of the agent's install (ServiceAccount, Lease). */
  readonly installNamespace: string;
  /** Name of the ClusterRole (and its binding) applied from manifests/agent. */
  readonly clusterRoleName: string;
  /** The server's state dir (agent registry, status files). */
  readonly serverStateDir: string;
  /** `https://127.0.0.1:PORT` of the server (stable across restarts). */
  readonly serverUrl: string;
  /** The agent's `--server-url`. */
  readonly connectUrl: string;
  /** The self-signed certificate the agent trusts. */
  readonly caPath: string;
  /** The current server process (undefined while stopped). */
  readonly server: ManagedProcess | undefined;
  /** The current agent process (undefined while stopped). */
  readonly agent: ManagedProcess | undefined;
  /**
   * Writes `files` (null deletes) to the manifest project, pushes with git and fires the webhook; resolves to the sha.
   */
  commit(files: Record<string, string | null>, options?: CommitOptions): Promise<string>;
  /** Fires the push webhook for a project (default the manifest project). */
  notify(project?: string): Promise<void>;
  /** `gitops-server agent list -o json`, parsed. */
  agentList(): Promise<AgentListRow[]>;
  /** Every complete JSON line a process has logged so far. */
  logs(proc: ManagedProcess): Promise<LogRecord[]>;
  /** The first log line of `proc` matching `match`; fails early with the log tail if `proc` exits. */
  waitForLog(
    proc: ManagedProcess,
    match: (r: LogRecord) => boolean,
    timeoutMs?: number,
    what?: string,
  ): Promise<LogRecord>;
  stopServer(): Promise<void>;
  /** Starts the server again on the same port with the same state dir and certificate. */
  startServer(): Promise<void>;
  /** SIGKILL, as when a node dies; resolves once the process is gone. */
  killAgent(): Promise<void>;
  /** SIGTERM and wait (graceful: the Lease is released). */
  stopAgent(): Promise<void>;
  /** Starts the agent (again, with the same state dir) and waits until it is connected. */
  startAgent(options?: { waitConnected?: boolean }): Promise<void>;
  /** The last lines of the latest server and agent logs (running or not), for failure messages. */
  logTails(lines?: number): Promise<string>;
  /** Stops both programs and the Git server, deletes the install from the cluster and the folder. */
  stop(): Promise<void>;
}

/** The lines both nginx Deployments below start with, up to `replicas`. */
function nginxDeploymentHead(namespace: string, replicas: number): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
  namespace: ${namespace}
spec:
  replicas: ${replicas}
`;
}

/** An nginx Deployment as in the seed scenario. */
export function nginxDeployment(namespace: string, replicas: number): string {
  return `${nginxDeploymentHead(namespace, replicas)}  selector:
    matchLabels: {app: nginx}
  template:
    metadata:
      labels: {app: nginx}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
`;
}

/**
 * An nginx Deployment in flow style (image `nginx`), as the fault tests, the agent e2e and the
 * server e2e commit it; its text is part of what some tests compare, so it stays byte for byte.
 */
export function compactNginxDeployment(namespace: string, replicas: number): string {
  return `${nginxDeploymentHead(namespace, replicas)}  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec: {containers: [{name: nginx, image: nginx}]}
`;
}

/** {@link compactNginxDeployment} and a ConfigMap `settings` (`data.value`) in `namespace`, one file. */
export function nginxWithSettings(namespace: string, replicas: number, value = 'one'): string {
  return `${compactNginxDeployment(namespace, replicas)}---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: ${namespace}
data:
  value: ${value}
`;
}

/** API path of a namespaced or cluster-scoped object. */
function objectPath(obj: KubeObject): string {
  const [group, version] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion];
  const base = group ? `/apis/${group}/${version}` : `/api/${version}`;
  const resource = `${obj.kind.toLowerCase()}s`;
  const ns = obj.metadata.namespace ? `/namespaces/${obj.metadata.namespace}` : '';
  return `${base}${ns}/${resource}/${obj.metadata.name}`;
}

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
}

/**
 * The objects of a kustomization, read the simple way: the YAML files (and folders with their own
 * kustomization.yaml) listed under `resources`, generators and image rewrites ignored. Enough for
 * manifests/agent, whose generator only feeds the Deployment.
 */
export async function readKustomization(dir: string): Promise<KubeObject[]> {
  const kustomization = parseYaml(await readFile(path.join(dir, 'kustomization.yaml'), 'utf8')) as {
    resources?: string[];
  };
  const out: KubeObject[] = [];
  for (const entry of kustomization.resources ?? []) {
    const full = path.join(dir, entry);
    if (!entry.endsWith('.yaml') && !entry.endsWith('.yml')) {
      out.push(...(await readKustomization(full)));
      continue;
    }
    for (const doc of parseAllDocuments(await readFile(full, 'utf8'))) {
      const obj = doc.toJS() as KubeObject | null;
      if (obj) out.push(obj);
    }
  }
  return out;
}

/**
 * The RBAC part of the agent's install (everything but the Deployment, which needs an image and a
 * kubelet; the agent runs as a local process instead), renamed for this stack.
 */
export function installObjects(objects: KubeObject[], suffix: string): KubeObject[] {
  const rename = (name: string): string => (suffix ? `${name}-${suffix}` : name);
  const ns = rename(INSTALL_NAMESPACE);
  return objects
    .filter((o) => o.kind !== 'Deployment')
    .map((o) => {
      const copy = structuredClone(o);
      if (copy.kind === 'Namespace' && copy.metadata.name === INSTALL_NAMESPACE) copy.metadata.name = ns;
      if (copy.metadata.namespace === INSTALL_NAMESPACE) copy.metadata.namespace = ns;
      if (copy.kind === 'ClusterRole' || copy.kind === 'ClusterRoleBinding')
        copy.metadata.name = rename(copy.metadata.name);
      const roleRef = copy.roleRef as { kind: string; name: string } | undefined;
      if (roleRef?.kind === 'ClusterRole') roleRef.name = rename(roleRef.name);
      for (const s of (copy.subjects as Array<{ namespace?: string }> | undefined) ?? [])
        if (s.namespace === INSTALL_NAMESPACE) s.namespace = ns;
      return copy;
    });
}

/** POST over TLS trusting `ca` (global fetch cannot take a CA per request). */
function postJson(url: string, ca: string, headers: Record<string, string>, body: unknown): Promise<number> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: 'POST',
        ca,
        headers: { ...headers, 'content-type': 'application/json', 'content-length': String(payload.length) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Starts everything; on a failure, whatever was started is stopped before the error is thrown. */
export async function startStack(options: StackOptions): Promise<Stack> {
  const say = options.log ?? (() => {});
  const kc = options.kubeConfig;
  const root = repoRoot();
  const serverCli = path.join(root, 'dist', 'bin', 'gitops-server.js');
  const agentCli = path.join(root, 'dist', 'bin', 'gitops-agent.js');
  const suffix = options.installSuffix ?? randomBytes(3).toString('hex');
  const logLevel = options.logLevel ?? 'debug';
  const webhookSecret = randomBytes(24).toString('hex');

  const group = await ProcessGroup.create({ prefix: 'gitops-stack-', handleSignals: options.handleSignals });
  const serverStateDir = path.join(group.dir, 'server-state');
  const agentStateDir = path.join(group.dir, 'agent-state');
  const tokenPath = path.join(group.dir, 'agent.token');
  const webhookSecretPath = path.join(group.dir, 'webhook.secret');
  let gitServer: GitServer | undefined;
  const repos: TestRepo[] = [];
  let applied: KubeObject[] = [];
  let creds: PodCredentials | undefined;
  let server: ManagedProcess | undefined;
  let agent: ManagedProcess | undefined;
  let serverPort = 0;
  let connectUrl = '';
  let caPath = '';
  let caPem = '';
  let seq = 0;
  let stopped = false;

  const logs = (proc: ManagedProcess): Promise<LogRecord[]> => readLogRecords(proc.logPath);
  const waitForLog = async (
    proc: ManagedProcess,
    match: (r: LogRecord) => boolean,
    timeoutMs = 15_000,
    what = 'a log line',
  ): Promise<LogRecord> => {
    // waitFor takes a thrown error for "not yet", so an exit is returned and thrown here: fail at once.
    const result = await waitFor(
      async (): Promise<{ found: LogRecord } | { exited: ProcessExit } | undefined> => {
        const found = (await logs(proc)).find(match);
        if (found) return { found };
        const exited = proc.exit();
        return exited ? { exited } : undefined;
      },
      timeoutMs,
      `${proc.name}: ${what}`,
      20,
    );
    if ('found' in result) return result.found;
    throw new Error(
      `${proc.name} exited ${JSON.stringify(result.exited)} while waiting for ${what}:\n${await proc.logTail(40)}`,
    );
  };

  const serverCmd = async (...args: string[]): Promise<string> => {
    try {
      const { stdout } = await run(process.execPath, [serverCli, ...args, '--state-dir', serverStateDir], {
        maxBuffer: 16 * 1024 * 1024,
      });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`gitops-server ${args.slice(0, 2).join(' ')}: ${e.stderr?.trim() || e.message}`);
    }
  };

  const startServer = async (): Promise<void> => {
    if (server && !server.exit()) throw new Error(`${server.name}: already running`);
    server = group.start(`server-${seq++}`, process.execPath, [
      serverCli,
      'serve',
      '--listen',
      `127.0.0.1:${serverPort}`,
      '--state-dir',
      serverStateDir,
      '--tls-self-signed',
      '--git-base-url',
      gitServer!.url,
      '--poll-interval',
      options.pollInterval ?? '5s',
      '--heartbeat-interval',
      '2s',
      '--webhook-secret-file',
      webhookSecretPath,
      '--log-level',
      logLevel,
    ]);
    const listening = await waitForLog(server, (r) => r.msg === 'server listening', 20_000, 'server listening');
    connectUrl = String(listening.connect);
    caPath = String(listening.caCert);
    serverPort = Number(new URL(connectUrl).port);
    caPem = await readFile(caPath, 'utf8');
  };

  const startAgent = async ({ waitConnected = true } = {}): Promise<void> => {
    if (agent && !agent.exit()) throw new Error(`${agent.name}: already running`);
    // What a pod's environment holds: no kubeconfig, the API server as a "service", the pod's names.
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...creds!.env,
      GITOPS_AGENT_SERVICEACCOUNT_DIR: creds!.serviceAccountDir,
      POD_NAME: `gitops-agent-${suffix || 'demo'}-${seq}`,
      POD_NAMESPACE: installNamespace,
    };
    delete env.KUBECONFIG;
    agent = group.start(
      `agent-${seq++}`,
      process.execPath,
      [
        agentCli,
        'run',
        '--server-url',
        connectUrl,
        '--token-file',
        tokenPath,
        '--ca-file',
        caPath,
        '--state-dir',
        agentStateDir,
        '--listen',
        '127.0.0.1:0',
        '--log-level',
        logLevel,
        ...(options.agentArgs ?? []),
      ],
      { env },
    );
    if (waitConnected) await waitForLog(agent, (r) => r.msg === 'connected to server', 20_000, 'connected to server');
  };

  const notify = async (project = MANIFEST_PROJECT): Promise<void> => {
    const status = await postJson(
      `https://127.0.0.1:${serverPort}/api/v1/webhooks/gitlab`,
      caPem,
      { 'x-gitlab-token': webhookSecret, 'x-gitlab-event': 'Push Hook' },
      { object_kind: 'push', project: { path_with_namespace: project } },
    );
    if (status !== 202) throw new Error(`webhook for ${project}: server answered ${status}`);
  };

  const installNamespace = suffix ? `${INSTALL_NAMESPACE}-${suffix}` : INSTALL_NAMESPACE;
  const clusterRoleName = suffix ? `gitops-agent-${suffix}` : 'gitops-agent';

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await group.dispose(10_000);
    await gitServer?.stop();
    for (const r of repos) await r.dispose();
    // Cluster-scoped objects first; the namespace takes its ServiceAccount and Role with it.
    for (const obj of [...applied].reverse()) {
      if (obj.metadata.namespace) continue;
      await kubeRequest(kc, 'DELETE', objectPath(obj)).catch(() => undefined);
    }
  };

  try {
    // 1. Git: the config project and an empty manifest project.
    gitServer = await startGitServer({ root: path.join(group.dir, 'repos') });
    const configRepo = await createRepo(gitServer, CONFIG_PROJECT);
    const manifestRepo = await createRepo(gitServer, MANIFEST_PROJECT);
    repos.push(configRepo, manifestRepo);
    const extra = [
      ...(options.defaultNamespace ? [`    default_namespace: ${options.defaultNamespace}`] : []),
      ...(options.projectConfig ? [options.projectConfig.replace(/\n$/, '')] : []),
    ];
    await configRepo.commit({
      files: {
        [`.gitlab/agents/${AGENT_NAME}/config.yaml`]: `gitops:\n  manifest_projects:\n  - id: ${MANIFEST_PROJECT}\n    paths:\n    - glob: '/**/*.yaml'\n${extra.map((l) => `${l}\n`).join('')}`,
      },
      message: `agent ${AGENT_NAME}: watch ${MANIFEST_PROJECT}`,
    });
    await manifestRepo.commit({ files: { 'manifest.yaml': '' }, message: 'empty manifest' });
    say(`git server ${gitServer.url}: ${CONFIG_PROJECT}.git, ${MANIFEST_PROJECT}.git (empty manifest.yaml)`);

    // 2. The agent record, made the way an operator makes it; the token goes where a Secret would mount it.
    await mkdir(serverStateDir, { recursive: true, mode: 0o700 });
    const token = (await serverCmd('agent', 'create', AGENT_NAME, '--config-project', CONFIG_PROJECT)).trim();
    if (!token) throw new Error('gitops-server agent create printed no token');
    await writeFile(tokenPath, `${token}\n`, { mode: 0o600 });
    await writeFile(webhookSecretPath, `${webhookSecret}\n`, { mode: 0o600 });
    say(`gitops-server agent create ${AGENT_NAME} --config-project ${CONFIG_PROJECT}: token written to ${tokenPath}`);

    // 3. The server.
    await startServer();
    say(`gitops-server serve: ${connectUrl} (self-signed certificate ${caPath})`);

    // 4. The agent's install from manifests/agent, server-side applied, then a pod's credentials.
    const objects = installObjects(await readKustomization(path.join(root, 'manifests', 'agent')), suffix);
    for (const obj of objects) {
      const res = await kubeRequest(
        kc,
        'PATCH',
        `${objectPath(obj)}?fieldManager=gitops-e2e&force=true`,
        obj,
        'application/apply-patch+yaml',
      );
      if (res.status >= 300)
        throw new Error(
          `${obj.kind}/${obj.metadata.namespace ?? ''}/${obj.metadata.name}: apply failed with ${res.status}: ${JSON.stringify(res.body)}`,
        );
      applied.push(obj);
    }
    say(`manifests/agent applied: ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
    await waitFor(
      async () =>
        (await kubeRequest(kc, 'GET', `/api/v1/namespaces/${installNamespace}/serviceaccounts/${SERVICE_ACCOUNT}`))
          .status === 200,
      10_000,
      'the ServiceAccount',
    );
    creds = await writePodCredentials(kc, {
      namespace: installNamespace,
      serviceAccount: SERVICE_ACCOUNT,
      dir: path.join(group.dir, 'pod'),
    });

    // 5. The agent, as in a pod.
    await startAgent();
    say(`gitops-agent run: connected as ServiceAccount ${installNamespace}/${SERVICE_ACCOUNT}`);

    return {
      dir: group.dir,
      kubeConfig: kc,
      gitServer,
      configRepo,
      manifestRepo,
      installNamespace,
      clusterRoleName,
      serverStateDir,
      get serverUrl() {
        return `https://127.0.0.1:${serverPort}`;
      },
      get connectUrl() {
        return connectUrl;
      },
      get caPath() {
        return caPath;
      },
      get server() {
        return server && !server.exit() ? server : undefined;
      },
      get agent() {
        return agent && !agent.exit() ? agent : undefined;
      },
      async commit(files, { message, webhook = true } = {}) {
        const sha = await manifestRepo.commit({ files, message });
        if (webhook) await notify().catch((err: unknown) => say(`webhook not delivered: ${(err as Error).message}`));
        return sha;
      },
      notify,
      async agentList() {
        return JSON.parse(await serverCmd('agent', 'list', '-o', 'json')) as AgentListRow[];
      },
      logs,
      waitForLog,
      async logTails(lines = 20) {
        const parts: string[] = [];
        for (const p of [server, agent])
          if (p)
            parts.push(
              `--- last lines of ${p.name} (${p.exit() ? `exited ${JSON.stringify(p.exit())}` : 'running'}) ---\n${await p.logTail(lines)}`,
            );
        return parts.join('\n');
      },
      async stopServer() {
        if (server) await group.stop(server, 10_000);
      },
      startServer,
      async killAgent() {
        if (!agent || agent.exit()) return;
        process.kill(agent.pid, 'SIGKILL');
        await agent.exited;
      },
      async stopAgent() {
        if (agent) await group.stop(agent, 10_000);
      },
      startAgent,
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
