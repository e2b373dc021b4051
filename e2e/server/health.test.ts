/**
 * Protocol 2 (health) against the real server: the real serve code over TLS WebSockets, the real
 * Git smart-HTTP server, scripted agents speaking version 2 and version 1 as raw ws clients, and
 * `agent list` run as its own process (dist/, built by `npm test`).
 *
 * - a v2 agent is told the server speaks 2, sends status then health, and `agent list` (table and
 *   `-o json`), the status API and the metrics show it; the server logs a change of result once;
 * - a v1 agent gets exactly the config frame version 1 defined (its strict schema takes it), its
 *   desired state and status work as before, and its HEALTH is `-`;
 * - a v2 agent's failed objects keep their own problem code (DEPENDS_ON_CYCLE) in agent list;
 * - hostile health frames (over 1 MiB, 10,001 objects, wrong types, from a v1 session, for another
 *   project) are refused without the server noticing anything else.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  CloseCode,
  ConfigMessage,
  MAX_AGENT_MESSAGE_BYTES,
  type DesiredMessage,
  type HealthMessage,
  type StatusMessage,
} from '../../src/protocol/messages.js';
import { registerRegistryHealth } from '../../src/server/metrics.js';
import { createAgent, type AgentListRow } from '../../src/server/registry.js';
import type { RunningServer } from '../../src/server/serve.js';
import { createRepo, type TestRepo } from '../harness/git-repo.js';
import { startGitServer, type GitServer } from '../harness/git-server.js';
import { connectWithToken, type TestClient } from './client.js';
import { startInProcessServer, stopSuite } from './in-process.js';

const run = promisify(execFile);
const CLI = new URL('../../dist/bin/gitops-server.js', import.meta.url).pathname;
const AUD = 'gitops-server';
const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const PROJECT = 'gitops-project';
const CONFIG = `gitops:
  manifest_projects:
  - id: ${PROJECT}
    paths:
    - glob: '/**/*.yaml'
`;
const NAMES = ['agent-v2', 'agent-v1', 'agent-hostile', 'agent-codes'] as const;
/** config as protocol 1 defined it: strict, no protocolVersion (what a v1 agent decodes with). */
const V1Config = ConfigMessage.omit({ protocolVersion: true });

let work: string;
let gitServer: GitServer;
let configRepo: TestRepo;
let manifestRepo: TestRepo;
let server: RunningServer;
let ca: string;
let stateDir: string;
let logLines: string[] = [];
const tokens: Record<string, string> = {};
const clients: TestClient[] = [];

async function connect(name: (typeof NAMES)[number], protocolVersion = 2): Promise<TestClient> {
  const c = await connectWithToken(server.connectUrl, ca, tokens[name], AUD, { protocolVersion });
  clients.push(c);
  return c;
}

function statusFor(desired: DesiredMessage): StatusMessage {
  return {
    type: 'status',
    project: desired.project,
    commit: desired.commit,
    digest: desired.digest,
    result: 'applied',
    changes: [
      { id: 'Deployment/default/nginx', action: 'created' },
      { id: 'ConfigMap/default/a', action: 'created' },
      { id: 'ConfigMap/default/b', action: 'created' },
    ],
    errors: [],
    durationMs: 12,
  };
}

function healthFor(desired: DesiredMessage, over: Partial<HealthMessage> = {}): HealthMessage {
  return {
    type: 'health',
    project: desired.project,
    commit: desired.commit,
    digest: desired.digest,
    result: 'degraded',
    objects: [
      {
        id: 'Deployment/default/nginx',
        state: 'failed',
        reason: 'ImagePullBackOff',
        message: 'Back-off pulling image "nginx:does-not-exist"',
      },
      { id: 'ConfigMap/default/a', state: 'current' },
      { id: 'ConfigMap/default/b', state: 'current' },
    ],
    waitedMs: 3100,
    ...over,
  };
}

async function agentList(): Promise<AgentListRow[]> {
  const { stdout } = await run(process.execPath, [CLI, 'agent', 'list', '-o', 'json', '--state-dir', stateDir]);
  return JSON.parse(stdout) as AgentListRow[];
}

async function tableLine(name: string): Promise<string> {
  const { stdout } = await run(process.execPath, [CLI, 'agent', 'list', '--state-dir', stateDir]);
  const lines = stdout.split('\n');
  const header = lines[0];
  const line = lines.find((l) => l.startsWith(`${name} `)) ?? '';
  // The HEALTH column, by the header's position (columns are padded to the widest cell).
  const start = header.indexOf('HEALTH');
  const end = header.indexOf('LAST ERROR');
  return line.slice(start, end).trim();
}

/** Polls `check` until it holds: the server writes status debounced (500 ms). */
async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function get(pathname: string, authorization?: string): Promise<{ status: number; body: string }> {
  const url = `${server.baseUrl.replace('wss:', 'https:')}${pathname}`;
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca, headers: authorization ? { authorization } : {} }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'gitops-server-health-'));
  gitServer = await startGitServer({ root: path.join(work, 'repos') });
  configRepo = await createRepo(gitServer, 'kubernetes-agent');
  manifestRepo = await createRepo(gitServer, PROJECT);
  await configRepo.commit({
    files: Object.fromEntries(NAMES.map((n) => [`.gitlab/agents/${n}/config.yaml`, CONFIG])),
  });
  await manifestRepo.commit({
    files: { 'manifest.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n' },
  });
  stateDir = path.join(work, 'state');
  for (const n of NAMES) tokens[n] = (await createAgent(stateDir, n, 'kubernetes-agent')).token;
  await writeFile(path.join(work, 'admin.token'), ADMIN_TOKEN, { mode: 0o600 });
  ({ server, ca, logLines } = await startInProcessServer({
    stateDir,
    gitBaseUrl: gitServer.url,
    adminTokenFile: path.join(work, 'admin.token'),
  }));
  // As `gitops-server serve` wires it (src/server/commands/serve.ts).
  registerRegistryHealth(server.metrics, server.registry);
}, 60_000);

afterAll(() => stopSuite({ clients, server, gitServer, repos: [configRepo, manifestRepo], work }));

describe('protocol 2: health', () => {
  it('shows a v2 agent’s health in agent list (table and json), the status API, the metrics and one log line', async () => {
    expect(existsSync(CLI)).toBe(true);
    const agent = await connect('agent-v2');
    expect((await agent.next('config')).protocolVersion).toBe(2);
    const desired = await agent.next('desired');
    agent.send(statusFor(desired));
    agent.send(healthFor(desired, { result: 'progressing', objects: [], waitedMs: undefined }));
    agent.send(healthFor(desired));
    agent.send(healthFor(desired)); // the same result again: no second log line

    const row = await eventually('health in agent list -o json', async () => {
      const r = (await agentList()).find((a) => a.name === 'agent-v2');
      return r?.status?.health?.[PROJECT]?.result === 'degraded' ? r : undefined;
    });
    expect(row.status?.health?.[PROJECT]).toEqual({
      commit: desired.commit,
      digest: desired.digest,
      result: 'degraded',
      total: 3,
      counts: { failed: 1, current: 2 },
      notCurrent: 1,
      objects: [
        {
          id: 'Deployment/default/nginx',
          state: 'failed',
          reason: 'ImagePullBackOff',
          message: 'Back-off pulling image "nginx:does-not-exist"',
        },
      ],
      waitedMs: 3100,
      at: expect.any(String),
    });
    expect(await tableLine('agent-v2')).toBe('degraded 1/3');

    const api = await get('/api/v1/agents', `Bearer ${ADMIN_TOKEN}`);
    expect(api.status).toBe(200);
    const listed = (JSON.parse(api.body) as { agents: AgentListRow[] }).agents.find((a) => a.name === 'agent-v2');
    expect(listed?.status?.health?.[PROJECT]).toMatchObject({ result: 'degraded', notCurrent: 1 });

    const degradedLines = logLines.filter((l) => l.includes('"agent commit degraded"'));
    expect(degradedLines).toHaveLength(1);
    expect(JSON.parse(degradedLines[0])).toMatchObject({
      agent: 'agent-v2',
      project: PROJECT,
      commit: desired.commit,
      waitedMs: 3100,
      notCurrent: 1,
    });

    // A late health of an older commit changes nothing; the commit becoming healthy is one line.
    agent.send(healthFor(desired, { commit: 'f'.repeat(40), result: 'healthy' }));
    agent.send(healthFor(desired, { result: 'healthy', objects: [], waitedMs: 9000 }));
    await eventually('healthy in agent list', async () =>
      (await tableLine('agent-v2')) === 'healthy' ? true : undefined,
    );
    expect(logLines.filter((l) => l.includes('"agent commit healthy"'))).toHaveLength(1);
    const metrics = await get('/metrics');
    expect(metrics.body).toContain('gitops_server_agent_health{result="healthy"} 1');
    expect(metrics.body).toContain('gitops_server_agent_health{result="degraded"} 0');
  });

  it('serves a v1 agent as before: the config frame v1 defined, desired, its status, and HEALTH -', async () => {
    const agent = await connect('agent-v1', 1);
    const config = await agent.next('config');
    expect(config.protocolVersion).toBeUndefined();
    const configFrame = agent.raw.find((r) => r.includes('"type":"config"'))!;
    expect(V1Config.safeParse(JSON.parse(configFrame)).success).toBe(true);
    const desired = await agent.next('desired');
    agent.send(statusFor(desired));
    const row = await eventually('the v1 status in agent list', async () => {
      const r = (await agentList()).find((a) => a.name === 'agent-v1');
      return r?.status?.applied?.[PROJECT]?.commit === desired.commit ? r : undefined;
    });
    expect(row.status?.health).toBeUndefined();
    expect(await tableLine('agent-v1')).toBe('-');

    // Health is version 2: from this session it is a protocol error, and nothing is stored.
    agent.send(healthFor(desired));
    expect(await agent.closed).toMatchObject({ code: CloseCode.INVALID_MESSAGE });
    const again = await connect('agent-v1', 1);
    expect((await again.next('config')).projects).toEqual([PROJECT]);
    expect((await agentList()).find((a) => a.name === 'agent-v1')?.status?.health).toBeUndefined();
  });

  it('refuses hostile health frames, each closing only its own session, and stores none of them', async () => {
    const bystander = await connect('agent-hostile');
    const desired = await bystander.next('desired');
    bystander.send(statusFor(desired));
    const valid = healthFor(desired);
    const cases: Array<[string, string | Buffer, number]> = [
      [
        'over 1 MiB',
        JSON.stringify({ ...valid, objects: [{ id: 'x'.repeat(MAX_AGENT_MESSAGE_BYTES), state: 'failed' }] }),
        CloseCode.MESSAGE_TOO_BIG,
      ],
      [
        '10,001 objects',
        JSON.stringify({ ...valid, objects: Array.from({ length: 10_001 }, () => ({ id: 'a', state: 'failed' })) }),
        CloseCode.INVALID_MESSAGE,
      ],
      [
        'a state of the wrong type',
        JSON.stringify({ ...valid, objects: [{ id: 'a', state: 7 }] }),
        CloseCode.INVALID_MESSAGE,
      ],
      ['an unknown result', JSON.stringify({ ...valid, result: 'fine' }), CloseCode.INVALID_MESSAGE],
      ['objects that are not a list', JSON.stringify({ ...valid, objects: { id: 'a' } }), CloseCode.INVALID_MESSAGE],
      [
        'a reason over 256 characters',
        JSON.stringify({ ...valid, objects: [{ id: 'a', state: 'failed', reason: 'r'.repeat(257) }] }),
        CloseCode.INVALID_MESSAGE,
      ],
      ['an extra field', JSON.stringify({ ...valid, exec: 'rm -rf /' }), CloseCode.INVALID_MESSAGE],
    ];
    for (const [name, frame, code] of cases) {
      const attacker = await connect('agent-hostile');
      await attacker.next('config');
      attacker.ws.send(frame);
      expect([name, (await attacker.closed).code]).toEqual([name, code]);
    }
    // A health for a project the agent does not follow: refused, told once, not stored.
    const other = await connect('agent-hostile');
    await other.next('config');
    other.send({ ...valid, project: 'tenant-b/secret-manifests' });
    expect((await other.next('error')).problems[0]).toMatchObject({ code: 'REPORT_REFUSED' });

    expect(bystander.ws.readyState).toBe(bystander.ws.OPEN);
    bystander.send({
      ...valid,
      result: 'timed_out',
      objects: [{ id: 'Deployment/default/nginx', state: 'in_progress' }],
    });
    const row = await eventually('the bystander’s own health', async () => {
      const r = (await agentList()).find((a) => a.name === 'agent-hostile');
      return r?.status?.health?.[PROJECT] ? r : undefined;
    });
    expect(Object.keys(row.status?.health ?? {})).toEqual([PROJECT]);
    expect(row.status?.health?.[PROJECT]).toMatchObject({ result: 'timed_out', total: 1, notCurrent: 1 });
    expect(await tableLine('agent-hostile')).toBe('timed_out 1/1');
    // Another tenant's agent never shows it.
    expect((await agentList()).find((a) => a.name === 'agent-v1')?.status?.health).toBeUndefined();
  });

  it('keeps a v2 agent’s per-object problem codes in agent list; a v1 session may not send them', async () => {
    const agent = await connect('agent-codes');
    const desired = await agent.next('desired');
    const cycle = 'depends-on forms a cycle: ConfigMap/default/a -> ConfigMap/default/b -> ConfigMap/default/a';
    agent.send({
      ...statusFor(desired),
      result: 'failed',
      changes: [
        { id: 'ConfigMap/default/a', action: 'failed', error: cycle, code: 'DEPENDS_ON_CYCLE' },
        { id: 'ConfigMap/default/b', action: 'failed', error: cycle, code: 'DEPENDS_ON_CYCLE' },
      ],
    });
    const problems = await eventually('the cycle in agent list', async () => {
      const r = (await agentList()).find((a) => a.name === 'agent-codes');
      return r?.status?.projectErrors?.[PROJECT]?.problems;
    });
    expect(problems.map((p) => [p.code, p.object])).toEqual([
      ['DEPENDS_ON_CYCLE', 'ConfigMap/default/a'],
      ['DEPENDS_ON_CYCLE', 'ConfigMap/default/b'],
    ]);
    // The code is version 2: a v1 session sending it is closed, as for health.
    const v1 = await connect('agent-codes', 1);
    await v1.next('config');
    v1.send({ ...statusFor(desired), changes: [{ id: 'a', action: 'failed', code: 'DEPENDS_ON_CYCLE' }] });
    expect((await v1.closed).code).toBe(CloseCode.INVALID_MESSAGE);
  });
});
