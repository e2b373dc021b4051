/**
 * The small shared part of the fault tests: a Git server with a config project, the built
 * `gitops-server serve` and `gitops-agent run` (dist/bin) as real processes in one ProcessGroup,
 * their JSON log lines, and `gitops-server agent list -o json` run as its own process. Each fault
 * test file makes one of these; the faults themselves (SIGKILL, stop/start) are done by the tests.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { createAgent } from '../../src/server/registry.js';
import type { AgentStatus } from '../../src/server/state-files.js';
import { createRepo, type TestRepo } from '../harness/git-repo.js';
import { startGitServer, type GitServer } from '../harness/git-server.js';
import { waitFor } from '../harness/wait.js';
import { ProcessGroup, type ManagedProcess } from '../harness/processes.js';

const SERVER_CLI = new URL('../../dist/bin/gitops-server.js', import.meta.url).pathname;
const AGENT_CLI = new URL('../../dist/bin/gitops-agent.js', import.meta.url).pathname;
const run = promisify(execFile);

export type LogRecord = Record<string, unknown> & { msg?: string };

/** One row of `gitops-server agent list -o json`. */
export interface AgentRow {
  name: string;
  status?: AgentStatus;
}

/** A running agent process and the state dir it keeps (reuse it to restart "in the same pod"). */
export interface AgentProc {
  proc: ManagedProcess;
  stateDir: string;
}

/** All JSON log lines a process wrote so far. */
export async function logs(proc: ManagedProcess): Promise<LogRecord[]> {
  const text = await readFile(proc.logPath, 'utf8').catch(() => '');
  const out: LogRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogRecord);
    } catch {
      // a line being written
    }
  }
  return out;
}

/** Waits for a log line; fails early with the log tail when the process exits. */
export async function waitForLog(proc: ManagedProcess, match: (r: LogRecord) => boolean, timeoutMs = 15_000, what = 'a log line'): Promise<LogRecord> {
  return waitFor(async () => {
    if (proc.exit()) throw new Error(`${proc.name} exited ${JSON.stringify(proc.exit())}:\n${await proc.logTail(40)}`);
    return (await logs(proc)).find(match);
  }, timeoutMs, `${proc.name}: ${what}`, 100);
}

/** Git server + config project + server process + agents; see the module comment. */
export class FaultStack {
  server?: ManagedProcess;
  connectUrl = '';
  caPath = '';
  readonly repos: Record<string, TestRepo> = {};
  private seq = 0;

  private constructor(readonly group: ProcessGroup, readonly git: GitServer, readonly configRepo: TestRepo) {}

  get stateDir(): string {
    return path.join(this.group.dir, 'server-state');
  }

  /**
   * Creates the Git server, a config project naming one manifest project `p-<agent>` per agent
   * (with `extraConfig` appended to the agent's config.yaml), and the agents' tokens. The server
   * is not started yet.
   */
  static async create(prefix: string, agents: Record<string, string>): Promise<FaultStack> {
    const group = await ProcessGroup.create({ prefix });
    const git = await startGitServer({ root: path.join(group.dir, 'repos') });
    const configRepo = await createRepo(git, 'kubernetes-agent');
    const stack = new FaultStack(group, git, configRepo);
    const files: Record<string, string> = {};
    await mkdir(stack.stateDir, { recursive: true });
    for (const [name, extra] of Object.entries(agents)) {
      files[`.gitlab/agents/${name}/config.yaml`] = `gitops:\n  manifest_projects:\n  - id: p-${name}\n    paths:\n    - glob: '/**/*.yaml'\n${extra}`;
      stack.repos[name] = await createRepo(git, `p-${name}`);
      await stack.repos[name].commit({ files: { 'README.md': 'manifests\n' } });
      const { token } = await createAgent(stack.stateDir, name, 'kubernetes-agent');
      await writeFile(path.join(group.dir, `${name}.token`), `${token}\n`, { mode: 0o600 });
    }
    await configRepo.commit({ files });
    return stack;
  }

  /** Starts `gitops-server serve` (1 s Git poll) and waits until it listens; the same port on restarts. */
  async startServer(): Promise<ManagedProcess> {
    const listen = this.connectUrl ? `127.0.0.1:${new URL(this.connectUrl).port}` : '127.0.0.1:0';
    this.server = this.group.start(`server-${this.seq++}`, process.execPath, [
      SERVER_CLI, 'serve', '--listen', listen, '--state-dir', this.stateDir, '--tls-self-signed',
      '--git-base-url', this.git.url, '--poll-interval', '1s', '--heartbeat-interval', '2s', '--log-level', 'debug',
    ]);
    const listening = await waitForLog(this.server, (r) => r.msg === 'server listening', 20_000, 'listening');
    this.connectUrl = String(listening.connect);
    this.caPath = String(listening.caCert);
    return this.server;
  }

  async stopServer(): Promise<void> {
    if (this.server) await this.group.stop(this.server, 10_000);
  }

  /** Starts `gitops-agent run` for `name` against `kubeconfig`; a new state dir unless given. */
  startAgent(name: string, options: { kubeconfig: string; stateDir?: string; leaseNamespace: string }): AgentProc {
    const n = this.seq++;
    const stateDir = options.stateDir ?? path.join(this.group.dir, `${name}-state-${n}`);
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.KUBECONFIG;
    const proc = this.group.start(`${name}-${n}`, process.execPath, [
      AGENT_CLI, 'run', '--server-url', this.connectUrl, '--token-file', path.join(this.group.dir, `${name}.token`), '--ca-file', this.caPath,
      '--kubeconfig', options.kubeconfig, '--state-dir', stateDir, '--listen', '127.0.0.1:0', '--lease-namespace', options.leaseNamespace,
      '--log-level', 'debug',
    ], { env });
    return { proc, stateDir };
  }

  async stopAgent(agent: AgentProc): Promise<void> {
    await this.group.stop(agent.proc, 10_000);
  }

  /** `gitops-server agent list -o json` as a user runs it, beside the running server. */
  async agentList(): Promise<AgentRow[]> {
    const { stdout } = await run(process.execPath, [SERVER_CLI, 'agent', 'list', '-o', 'json', '--state-dir', this.stateDir]);
    return JSON.parse(stdout) as AgentRow[];
  }

  /** The `agent list` row of `name`. */
  async agentRow(name: string): Promise<AgentRow> {
    const row = (await this.agentList()).find((r) => r.name === name);
    if (!row) throw new Error(`agent list has no row for ${name}`);
    return row;
  }

  /** Stops everything; GITOPS_E2E_KEEP_LOGS=DIR keeps the logs for a post-mortem. */
  async dispose(): Promise<void> {
    const keep = process.env.GITOPS_E2E_KEEP_LOGS;
    if (keep) {
      await mkdir(keep, { recursive: true });
      for (const f of await readdir(this.group.dir)) if (f.endsWith('.log')) await copyFile(path.join(this.group.dir, f), path.join(keep, f));
    }
    await this.group.dispose(10_000);
    await this.git.stop();
    for (const r of [this.configRepo, ...Object.values(this.repos)]) await r.dispose();
  }
}
