/**
 * A real `gitops-server serve` process for attack tests (the Hardening issue): the server as
 * operators run it (dist/bin, self-signed TLS, a webhook secret file, a state dir), a real Git
 * smart-HTTP server with a config project and manifest projects, agent records made with the real
 * `gitops-server agent create`, and scripted agents (real JWTs over TLS WebSockets, e2e/server/client.ts).
 *
 * What an attack test asserts comes from here: the process is alive (`alive()`), `/healthz` stays
 * fast while the attack runs (`watchHealthz()`), memory stays bounded (`memory()`: VmHWM and VmRSS
 * from /proc), other agents keep their sessions and get the next commit (`connect()`, `commit()`),
 * and the problem reaches the one agent concerned (`agentList()`, an `error` message).
 *
 * Needs `npm run build` (npm test does it). Everything listens on 127.0.0.1 and every process is
 * owned by a ProcessGroup, so nothing outlives the test, even a killed one.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll } from '@jest/globals';
import type { AgentMessage } from '../../src/protocol/messages.js';
import type { AgentListRow } from '../../src/server/registry.js';
import { connectWithToken, post, type TestClient } from '../server/client.js';
import { repoRoot } from './controlplane.js';
import { createRepo, type TestRepo } from './git-repo.js';
import { startGitServer, type GitServer } from './git-server.js';
import { readLogRecords, type LogRecord } from './log-records.js';
import { ProcessGroup, type ManagedProcess } from './processes.js';
import { waitFor } from './wait.js';

/** The config project every agent uses unless its spec names another. */
export const TENANT_CONFIG_PROJECT = 'kubernetes-agent';
/** The manifest project the default config watches. */
export const TENANT_MANIFEST_PROJECT = 'gitops-project';
/** The server's JWT audience (its default). */
export const TENANT_AUDIENCE = 'gitops-server';

/** The default config.yaml: GitLab's seed scenario, one manifest project, every YAML file. */
export const DEFAULT_TENANT_CONFIG = `gitops:
  manifest_projects:
  - id: ${TENANT_MANIFEST_PROJECT}
    paths:
    - glob: '/**/*.yaml'
`;

/** A ConfigMap manifest (small, valid): what the default manifest project holds. */
export function configMapManifest(name: string, value: string): string {
  return `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  value: "${value}"\n`;
}

export interface TenantAgentSpec {
  name: string;
  /** Its config project (default `kubernetes-agent`). */
  configProject?: string;
  /** Its config.yaml; default DEFAULT_TENANT_CONFIG; null writes none. */
  config?: string | null;
  /** Extra arguments for `gitops-server agent create` (e.g. `--allow-project x/`). */
  createArgs?: string[];
}

export interface TenantServerOptions {
  agents: TenantAgentSpec[];
  /**
   * Files of further repositories at their first commit (repository name → path → content). The
   * config projects get the agents' config files added; `gitops-project` gets a ConfigMap by default.
   */
  projects?: Record<string, Record<string, string>>;
  /** Extra arguments for `serve`. */
  serverArgs?: string[];
  /** Extra environment for the server process. */
  env?: NodeJS.ProcessEnv;
  /** `--poll-interval` (default 60s: tests notify by webhook). */
  pollInterval?: string;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface HealthzProbe {
  /** Stops probing; the slowest answer, how many were sent, and how many failed or were not 200. */
  stop(): Promise<{ maxMs: number; count: number; failures: number }>;
}

export interface TenantServer {
  readonly dir: string;
  readonly stateDir: string;
  readonly gitServer: GitServer;
  readonly webhookSecret: string;
  readonly webhookSecretPath: string;
  /** Agent name → token, as `agent create` printed it. */
  readonly tokens: Record<string, string>;
  /** `https://127.0.0.1:PORT` of the running server. */
  readonly url: string;
  readonly connectUrl: string;
  /** PEM the agents trust (the `caCert` of the 'server listening' line). */
  readonly ca: string;
  readonly server: ManagedProcess;
  /** The repository (created on first use). */
  repo(name: string): Promise<TestRepo>;
  /** Commits files to a project and sends a GitLab push webhook for it; resolves to the sha. */
  commit(project: string, files: Record<string, string | null>, options?: { webhook?: boolean }): Promise<string>;
  /** Sends a GitLab push webhook for a project; resolves to the HTTP status. */
  webhook(project: string): Promise<number>;
  /** A scripted agent with a fresh JWT (closed by stop()). */
  connect(name: string, hello?: Partial<Extract<AgentMessage, { type: 'hello' }>>): Promise<TestClient>;
  /** One `GET /healthz` on a fresh connection: status and milliseconds. */
  healthz(): Promise<{ status: number; ms: number }>;
  /** Probes /healthz every `intervalMs` (one at a time) until stopped. */
  watchHealthz(intervalMs?: number): HealthzProbe;
  /** Peak (VmHWM) and current (VmRSS) resident memory of the server process, in MiB. */
  memory(): Promise<{ hwmMiB: number; rssMiB: number }>;
  /** CPU time (user + system) the server process has used so far, in seconds. */
  cpuSeconds(): Promise<number>;
  /** `GET path` on the server with the CA trusted: status and body. */
  get(pathname: string, headers?: Record<string, string>): Promise<{ status: number; body: string }>;
  logs(): Promise<LogRecord[]>;
  waitForLog(match: (r: LogRecord) => boolean, timeoutMs?: number, what?: string): Promise<LogRecord>;
  /** `gitops-server ARGS --state-dir <state>` as a separate process; never throws. */
  cli(...args: string[]): Promise<CliResult>;
  /** `agent list -o json`. */
  agentList(): Promise<AgentListRow[]>;
  /** The row of one agent. */
  agentRow(name: string): Promise<AgentListRow>;
  /** True while the server process runs. */
  alive(): boolean;
  /** Stops the server process (SIGTERM) and starts it again with the same state (and extra serve args). */
  restart(extraArgs?: string[]): Promise<void>;
  stop(): Promise<void>;
}

const run = (file: string, args: string[]): Promise<CliResult> =>
  new Promise((resolve) => {
    execFile(file, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === 'number'
          ? (err as { code: number }).code
          : 1
        : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });

/** Reads `VmHWM` and `VmRSS` (kB) of a process from /proc. */
export async function processMemory(pid: number): Promise<{ hwmMiB: number; rssMiB: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { hwmMiB: kib('VmHWM') / 1024, rssMiB: kib('VmRSS') / 1024 };
}

/** User + system CPU time of a process from /proc/PID/stat, in seconds (USER_HZ is 100 on Linux). */
export async function processCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces: state is field 3,
  // utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function request(
  url: string,
  ca: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, agent: false, headers, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within 30 s`)));
    req.on('error', reject);
  });
}

/** A `key=value` of a text log line (`--log-format text`): bare, or a JSON string when quoted. */
export function textLogField(line: string, key: string): string | undefined {
  const m = new RegExp(`(?:^| )${key}=("(?:[^"\\\\]|\\\\.)*"|\\S+)`).exec(line);
  if (!m) return undefined;
  return m[1].startsWith('"') ? (JSON.parse(m[1]) as string) : m[1];
}

/** The 'server listening' line of a server writing text logs, as the fields tests read. */
async function waitForTextListening(proc: ManagedProcess): Promise<LogRecord> {
  const line = await waitFor(
    async () => {
      if (proc.exit()) throw new Error(`server exited ${JSON.stringify(proc.exit())}:\n${await proc.logTail(40)}`);
      return (await readFile(proc.logPath, 'utf8').catch(() => ''))
        .split('\n')
        .find((l) => l.includes(' server listening '));
    },
    20_000,
    'server listening (text log)',
    20,
  );
  return { msg: 'server listening', connect: textLogField(line, 'connect'), caCert: textLogField(line, 'caCert') };
}

/** Starts Git, makes the repositories and agent records, then the server process. */
export async function startTenantServer(options: TenantServerOptions): Promise<TenantServer> {
  const serverCli = path.join(repoRoot(), 'dist', 'bin', 'gitops-server.js');
  const group = await ProcessGroup.create({ prefix: 'gitops-tenant-' });
  const stateDir = path.join(group.dir, 'state');
  const webhookSecret = randomBytes(24).toString('hex');
  const webhookSecretPath = path.join(group.dir, 'webhook.secret');
  const tokens: Record<string, string> = {};
  const repos = new Map<string, TestRepo>();
  const clients: TestClient[] = [];
  let gitServer: GitServer | undefined;
  let server: ManagedProcess | undefined;
  let port = 0;
  let connectUrl = '';
  let ca = '';
  let seq = 0;

  const cli = (...args: string[]): Promise<CliResult> =>
    run(process.execPath, [serverCli, ...args, '--state-dir', stateDir]);
  const logs = (): Promise<LogRecord[]> => readLogRecords(server!.logPath);
  const waitForLog = async (
    match: (r: LogRecord) => boolean,
    timeoutMs = 15_000,
    what = 'a log line',
  ): Promise<LogRecord> => {
    const proc = server!;
    const found = await waitFor(
      async () => {
        const hit = (await readLogRecords(proc.logPath)).find(match);
        if (hit) return hit;
        if (proc.exit()) return { exited: proc.exit() } as LogRecord;
        return undefined;
      },
      timeoutMs,
      `server: ${what}`,
      20,
    );
    if ('exited' in found && !found.msg)
      throw new Error(
        `server exited ${JSON.stringify(found.exited)} while waiting for ${what}:\n${await proc.logTail(40)}`,
      );
    return found;
  };
  const agentList = async (): Promise<AgentListRow[]> => {
    const out = await cli('agent', 'list', '-o', 'json');
    if (out.code !== 0) throw new Error(`agent list: ${out.stderr.trim()}`);
    return JSON.parse(out.stdout) as AgentListRow[];
  };
  const repo = async (name: string): Promise<TestRepo> => {
    let r = repos.get(name);
    if (!r) {
      r = await createRepo(gitServer!, name);
      repos.set(name, r);
    }
    return r;
  };
  const webhook = (project: string): Promise<number> =>
    post(
      `https://127.0.0.1:${port}/api/v1/webhooks/gitlab`,
      ca,
      { 'x-gitlab-token': webhookSecret, 'x-gitlab-event': 'Push Hook' },
      JSON.stringify({ object_kind: 'push', project: { path_with_namespace: project } }),
    );

  const startServer = async (extraArgs: string[] = []): Promise<void> => {
    server = group.start(
      `server-${seq++}`,
      process.execPath,
      [
        serverCli,
        'serve',
        '--listen',
        `127.0.0.1:${port}`,
        '--state-dir',
        stateDir,
        '--tls-self-signed',
        '--git-base-url',
        gitServer!.url,
        '--poll-interval',
        options.pollInterval ?? '60s',
        '--heartbeat-interval',
        '1s',
        '--webhook-secret-file',
        webhookSecretPath,
        '--log-level',
        'debug',
        ...(options.serverArgs ?? []),
        ...extraArgs,
      ],
      { env: { ...process.env, ...options.env } },
    );
    const textLogs = [...(options.serverArgs ?? []), ...extraArgs].join(' ').includes('--log-format text');
    const listening = textLogs
      ? await waitForTextListening(server)
      : await waitForLog((r) => r.msg === 'server listening', 20_000, 'server listening');
    connectUrl = String(listening.connect);
    port = Number(new URL(connectUrl).port);
    ca = await readFile(String(listening.caCert), 'utf8');
  };

  const stop = async (): Promise<void> => {
    for (const c of clients) c.ws.terminate();
    await group.dispose(5_000);
    await gitServer?.stop();
    for (const r of repos.values()) await r.dispose();
  };

  try {
    gitServer = await startGitServer({ root: path.join(group.dir, 'repos') });
    const files: Record<string, Record<string, string>> = {
      [TENANT_MANIFEST_PROJECT]: { 'manifest.yaml': configMapManifest('tenant', 'one') },
      ...options.projects,
    };
    for (const a of options.agents) {
      if (a.config === null) continue;
      const project = a.configProject ?? TENANT_CONFIG_PROJECT;
      files[project] = {
        ...files[project],
        [`.gitlab/agents/${a.name}/config.yaml`]: a.config ?? DEFAULT_TENANT_CONFIG,
      };
    }
    for (const [name, content] of Object.entries(files))
      await (await repo(name)).commit({ files: content, message: 'first commit' });
    for (const a of options.agents) {
      const made = await cli(
        'agent',
        'create',
        a.name,
        '--config-project',
        a.configProject ?? TENANT_CONFIG_PROJECT,
        ...(a.createArgs ?? []),
      );
      if (made.code !== 0) throw new Error(`agent create ${a.name}: ${made.stderr.trim()}`);
      tokens[a.name] = made.stdout.trim();
    }
    await writeFile(webhookSecretPath, `${webhookSecret}\n`, { mode: 0o600 });
    await startServer();
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }

  return {
    dir: group.dir,
    stateDir,
    gitServer,
    webhookSecret,
    webhookSecretPath,
    tokens,
    get url() {
      return `https://127.0.0.1:${port}`;
    },
    get connectUrl() {
      return connectUrl;
    },
    get ca() {
      return ca;
    },
    get server() {
      return server!;
    },
    repo,
    async commit(project, content, { webhook: notify = true } = {}) {
      const sha = await (
        await repo(project)
      ).commit({ files: content, message: `change ${Object.keys(content).join(', ')}` });
      if (notify) {
        const status = await webhook(project);
        if (status !== 202) throw new Error(`webhook for ${project}: server answered ${status}`);
      }
      return sha;
    },
    webhook,
    async connect(name, hello) {
      const token = tokens[name];
      if (!token) throw new Error(`no agent ${name} in this tenant server`);
      const client = await connectWithToken(connectUrl, ca, token, TENANT_AUDIENCE, hello);
      clients.push(client);
      return client;
    },
    async healthz() {
      const t0 = performance.now();
      const { status } = await request(`https://127.0.0.1:${port}/healthz`, ca);
      return { status, ms: performance.now() - t0 };
    },
    watchHealthz(intervalMs = 20) {
      let running = true;
      let maxMs = 0;
      let count = 0;
      let failures = 0;
      const loop = (async () => {
        while (running) {
          const t0 = performance.now();
          try {
            const { status } = await request(`https://127.0.0.1:${port}/healthz`, ca);
            if (status !== 200) failures++;
          } catch {
            failures++;
          }
          maxMs = Math.max(maxMs, performance.now() - t0);
          count++;
          await new Promise((r) => setTimeout(r, intervalMs));
        }
      })();
      return {
        async stop() {
          running = false;
          await loop;
          return { maxMs, count, failures };
        },
      };
    },
    memory: () => processMemory(server!.pid),
    cpuSeconds: () => processCpuSeconds(server!.pid),
    get: (pathname, headers) => request(`https://127.0.0.1:${port}${pathname}`, ca, headers),
    logs,
    waitForLog,
    cli,
    agentList,
    async agentRow(name) {
      const row = (await agentList()).find((r) => r.name === name);
      if (!row) throw new Error(`agent list has no row for ${name}`);
      return row;
    },
    alive: () => !!server && !server.exit(),
    async restart(extraArgs) {
      if (server && !server.exit()) await group.stop(server, 10_000);
      await startServer(extraArgs);
    },
    stop,
  };
}

/** Jest fixture: one tenant server for a test file, started in beforeAll and stopped in afterAll. */
export function useTenantServer(options: TenantServerOptions): () => TenantServer {
  let ts: TenantServer | undefined;
  beforeAll(async () => {
    ts = await startTenantServer(options);
  }, 90_000);
  afterAll(async () => {
    await ts?.stop();
  }, 30_000);
  return () => {
    if (!ts) throw new Error('the tenant server did not start (see beforeAll)');
    return ts;
  };
}
