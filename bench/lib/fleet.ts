/**
 * The product's two programs as real processes for the bench: `gitops-server serve` with its own
 * state dir, config project and agents (created through the registry's createAgents, tokens in
 * files), and `gitops-agent run` processes connected to it. Both are the built CLIs from dist/bin,
 * started in the bench's ProcessGroup so nothing outlives the bench (also on Ctrl-C).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createAgents } from '../../src/server/registry.js';
import { createRepo, type TestRepo } from '../../e2e/harness/git-repo.js';
import type { GitServer } from '../../e2e/harness/git-server.js';
import type { ManagedProcess, ProcessGroup } from '../../e2e/harness/processes.js';
import { readLogRecords, type LogRecord } from '../../e2e/harness/log-records.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/bin/*.js, found from dist/bench/lib. */
export const SERVER_CLI = path.resolve(here, '..', '..', 'bin', 'gitops-server.js');
export const AGENT_CLI = path.resolve(here, '..', '..', 'bin', 'gitops-agent.js');

/**
 * GITOPS_BENCH_CPU_PROF=DIR starts the server and agent processes with `node --cpu-prof` writing
 * there (NODE_OPTIONS may not carry --cpu-prof); read the files with dist/bench/profile-summary.js.
 */
function nodeArgs(): string[] {
  const dir = process.env.GITOPS_BENCH_CPU_PROF;
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [];
}

export type { LogRecord };

const created: TestRepo[] = [];

/** createRepo, remembered so {@link disposeRepos} removes its work clone (in the system temp dir) at the end. */
export async function benchRepo(git: GitServer, name: string): Promise<TestRepo> {
  const repo = await createRepo(git, name);
  created.push(repo);
  return repo;
}

/** Removes the work clones of every repository made with {@link benchRepo}. */
export async function disposeRepos(): Promise<void> {
  for (const repo of created.splice(0)) await repo.dispose().catch(() => undefined);
}

/** Parsed JSON log lines of a process so far. */
export function logs(proc: ManagedProcess): Promise<LogRecord[]> {
  return readLogRecords(proc.logPath);
}

/** Waits for a log line matching `match`; fails with the log tail if the process exits or time runs out. */
export async function waitForLog(
  proc: ManagedProcess,
  match: (r: LogRecord) => boolean,
  timeoutMs: number,
  what: string,
): Promise<LogRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exit = proc.exit();
    if (exit)
      throw new Error(
        `${proc.name}: exited (${JSON.stringify(exit)}) while waiting for ${what}:\n${await proc.logTail(30)}`,
      );
    const found = (await logs(proc)).find(match);
    if (found) return found;
    if (Date.now() > deadline)
      throw new Error(`${proc.name}: no ${what} within ${timeoutMs} ms:\n${await proc.logTail(30)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface BenchAgentSpec {
  name: string;
  /** Manifest project the agent's config.yaml names. */
  manifestProject: string;
  defaultNamespace?: string;
}

export interface BenchServer {
  readonly name: string;
  readonly proc: ManagedProcess;
  readonly connectUrl: string;
  readonly caPath: string;
  /** `https://127.0.0.1:PORT` for webhooks. */
  readonly httpsBase: string;
  readonly webhookSecret?: string;
  readonly configRepo: TestRepo;
  /** Token file of each agent, by name. */
  readonly tokenFiles: Map<string, string>;
  readonly tokens: Map<string, string>;
}

export interface StartServerOptions {
  name: string;
  agents: BenchAgentSpec[];
  pollInterval: string;
  /** When set, webhooks are on with this secret. */
  webhookSecret?: string;
  logLevel?: string;
  progress?: (line: string) => void;
}

function configYaml(spec: BenchAgentSpec): string {
  return `gitops:\n  manifest_projects:\n  - id: ${spec.manifestProject}\n${spec.defaultNamespace ? `    default_namespace: ${spec.defaultNamespace}\n` : ''}    paths:\n    - glob: '**/*.{yaml,yml,json}'\n`;
}

/** Creates the config project and agents, then starts `gitops-server serve` and waits until it listens. */
export async function startServer(
  group: ProcessGroup,
  git: GitServer,
  options: StartServerOptions,
): Promise<BenchServer> {
  const stateDir = path.join(group.dir, `${options.name}-state`);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const configRepo = await benchRepo(git, `${options.name}-config`);
  const files: Record<string, string> = {};
  for (const a of options.agents) files[`.gitlab/agents/${a.name}/config.yaml`] = configYaml(a);
  await configRepo.commit({ files, message: 'agents' });
  const tokenFiles = new Map<string, string>();
  const tokens = new Map<string, string>();
  const t0 = Date.now();
  // One locked write for the whole fleet (K single creates would each read and append under the lock).
  const created = await createAgents(
    stateDir,
    options.agents.map((a) => ({ name: a.name, configProject: configRepo.name })),
  );
  for (const [i, a] of options.agents.entries()) {
    const { token } = created[i];
    tokens.set(a.name, token);
    if (options.agents.length <= 20) {
      const file = path.join(group.dir, `${options.name}-${a.name}.token`);
      await writeFile(file, `${token}\n`, { mode: 0o600 });
      tokenFiles.set(a.name, file);
    }
  }
  if (options.agents.length > 1000)
    options.progress?.(`${options.agents.length} agents created (${Math.round((Date.now() - t0) / 1000)} s)`);
  const args = [
    ...nodeArgs(),
    SERVER_CLI,
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--state-dir',
    stateDir,
    '--tls-self-signed',
    '--git-base-url',
    git.url,
    '--poll-interval',
    options.pollInterval,
    '--log-level',
    options.logLevel ?? 'info',
  ];
  if (options.webhookSecret) {
    const secretFile = path.join(group.dir, `${options.name}-webhook.secret`);
    await writeFile(secretFile, options.webhookSecret, { mode: 0o600 });
    args.push('--webhook-secret-file', secretFile);
  }
  const proc = group.start(`${options.name}-server`, process.execPath, args);
  options.progress?.(`gitops-server ${options.name} started (pid ${proc.pid})`);
  const listening = await waitForLog(proc, (r) => r.msg === 'server listening', 60_000, '"server listening"');
  const connectUrl = String(listening.connect);
  return {
    name: options.name,
    proc,
    connectUrl,
    caPath: String(listening.caCert),
    httpsBase: connectUrl.replace(/^wss:/, 'https:').replace(/\/api\/.*$/, ''),
    ...(options.webhookSecret ? { webhookSecret: options.webhookSecret } : {}),
    configRepo,
    tokenFiles,
    tokens,
  };
}

/** Starts `gitops-agent run` for one of the server's agents (admin kubeconfig, no Lease, no health port). */
export function startAgent(
  group: ProcessGroup,
  server: BenchServer,
  agentName: string,
  kubeconfigPath: string,
  extraArgs: string[] = [],
): ManagedProcess {
  const tokenFile = server.tokenFiles.get(agentName);
  if (!tokenFile)
    throw new Error(`agent ${agentName}: not an agent of server ${server.name} (or too many agents for token files)`);
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.KUBECONFIG;
  return group.start(
    `${server.name}-${agentName}`,
    process.execPath,
    [
      ...nodeArgs(),
      AGENT_CLI,
      'run',
      '--server-url',
      server.connectUrl,
      '--token-file',
      tokenFile,
      '--ca-file',
      server.caPath,
      '--kubeconfig',
      kubeconfigPath,
      '--state-dir',
      path.join(group.dir, `${server.name}-${agentName}-state`),
      '--listen',
      'off',
      '--no-leader-elect',
      '--log-level',
      'info',
      ...extraArgs,
    ],
    { env },
  );
}

/** Asks the server to fetch `project` now, as a Git host's push webhook would (generic refresh hook). */
export async function sendWebhook(server: BenchServer, project: string): Promise<number> {
  if (!server.webhookSecret) throw new Error(`server ${server.name}: webhooks are off`);
  const ca = await readFile(server.caPath, 'utf8');
  return new Promise<number>((resolve, reject) => {
    const body = JSON.stringify({ project });
    const req = https.request(
      `${server.httpsBase}/api/v1/webhooks/generic`,
      {
        method: 'POST',
        ca,
        agent: webhookAgent(ca),
        headers: {
          authorization: `Bearer ${server.webhookSecret}`,
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

// One keep-alive connection per server certificate, as a Git host's webhook sender would keep.
let cachedAgent: { ca: string; agent: https.Agent } | undefined;
function webhookAgent(ca: string): https.Agent {
  if (cachedAgent?.ca !== ca) cachedAgent = { ca, agent: new https.Agent({ keepAlive: true, ca }) };
  return cachedAgent.agent;
}
