/**
 * gitops-server end to end: the real serve code over real TLS WebSockets (self-signed certificate
 * made by the server), the real Git smart-HTTP server, and scripted agents using the real
 * token/JWT code. `agent list` and `agent revoke` also run as separate processes (dist/, built by
 * `npm test`).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { signAgentJwt } from '../../src/protocol/jwt.js';
import { CONNECT_PATH, CloseCode, MAX_MESSAGE_BYTES } from '../../src/protocol/messages.js';
import { generateToken, publicKeyFromX } from '../../src/protocol/token.js';
import { createAgent, listAgents } from '../../src/server/registry.js';
import type { RunningServer } from '../../src/server/serve.js';
import { createRepo, type TestRepo } from '../harness/git-repo.js';
import { startGitServer, type GitServer } from '../harness/git-server.js';
import { compactNginxDeployment } from '../harness/stack.js';
import { connectClient, connectWithToken, post, upgradeStatus, type TestClient } from './client.js';
import { startInProcessServer, stopSuite } from './in-process.js';

const run = promisify(execFile);
const CLI = new URL('../../dist/bin/gitops-server.js', import.meta.url).pathname;
const AUD = 'gitops-server';
const WEBHOOK_SECRET = 'webhook-secret-0123456789';

const CONFIG = `gitops:
  manifest_projects:
  - id: gitops-project
    paths:
    - glob: '/**/*.yaml'
`;
/** agent-errors follows a second project: the server stores reports only for projects an agent follows. */
const CONFIG_TWO_PROJECTS = `${CONFIG}  - id: other-project
    paths:
    - glob: '/**/*.yaml'
`;
const deployment = (replicas: number): string => compactNginxDeployment('default', replicas);

let work: string;
let gitServer: GitServer;
let configRepo: TestRepo;
let manifestRepo: TestRepo;
let otherRepo: TestRepo;
let server: RunningServer;
let ca: string;
let stateDir: string;
let logLines: string[] = [];
const tokens: Record<string, string> = {};
const clients: TestClient[] = [];

async function connect(name: string, hello?: Parameters<typeof connectWithToken>[4]): Promise<TestClient> {
  const c = await connectWithToken(server.connectUrl, ca, tokens[name], AUD, hello);
  clients.push(c);
  return c;
}

function webhook(project: string): Promise<number> {
  const url = `${server.baseUrl.replace('wss:', 'https:')}/api/v1/webhooks/generic`;
  return post(url, ca, { authorization: `Bearer ${WEBHOOK_SECRET}` }, JSON.stringify({ project }));
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'gitops-server-e2e-'));
  gitServer = await startGitServer({ root: path.join(work, 'repos') });
  configRepo = await createRepo(gitServer, 'kubernetes-agent');
  manifestRepo = await createRepo(gitServer, 'gitops-project');
  const names = [
    'agent1',
    'agent-current',
    'agent-bad-jwt',
    'agent-frames',
    'agent-revoke',
    'agent-bad-config',
    'agent-unreachable',
    'agent-errors',
  ];
  const files: Record<string, string> = {};
  for (const n of names) files[`.gitlab/agents/${n}/config.yaml`] = n === 'agent-errors' ? CONFIG_TWO_PROJECTS : CONFIG;
  await configRepo.commit({ files });
  await manifestRepo.commit({ files: { 'manifest.yaml': deployment(2) } });
  otherRepo = await createRepo(gitServer, 'other-project');
  await otherRepo.commit({ files: { 'manifest.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n' } });
  stateDir = path.join(work, 'state');
  for (const n of names) tokens[n] = (await createAgent(stateDir, n, 'kubernetes-agent')).token;
  // The secret is a file, as for operators (--webhook-secret on the command line is refused).
  await writeFile(path.join(work, 'webhook.secret'), WEBHOOK_SECRET, { mode: 0o600 });
  ({ server, ca, logLines } = await startInProcessServer({
    stateDir,
    gitBaseUrl: gitServer.url,
    webhookSecretFile: path.join(work, 'webhook.secret'),
  }));
}, 60_000);

afterAll(() => stopSuite({ clients, server, gitServer, repos: [configRepo, manifestRepo, otherRepo], work }));

describe('gitops-server serve', () => {
  it('sends config and the current desired state after hello, then the next commit within a second of a webhook', async () => {
    const head = await manifestRepo.head();
    const client = await connect('agent1');
    const config = await client.next('config');
    expect(config.projects).toEqual(['gitops-project']);
    const first = await client.next('desired');
    expect(first).toMatchObject({
      project: 'gitops-project',
      commit: head,
      files: [{ path: 'manifest.yaml', content: deployment(2) }],
    });
    expect(first.config).toMatchObject({ id: 'gitops-project', defaultNamespace: 'default', prune: true });

    const next = await manifestRepo.commit({ files: { 'manifest.yaml': deployment(3) } });
    const started = Date.now();
    expect(await webhook('gitops-project')).toBe(202);
    const second = await client.next('desired', 1000);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(second.commit).toBe(next);
    expect(second.files[0].content).toContain('replicas: 3');
    expect(second.digest).not.toBe(first.digest);
    expect(
      logLines.some((l) => l.includes('"detected commit"') && l.includes(next) && l.includes('gitops-project')),
    ).toBe(true);

    client.send({
      type: 'status',
      project: 'gitops-project',
      commit: next,
      digest: second.digest,
      result: 'applied',
      changes: [{ id: 'Deployment/default/nginx', action: 'configured' }],
      errors: [],
      durationMs: 12,
    });
    await new Promise((r) => setTimeout(r, 800));
    const row = (await listAgents(stateDir)).find((a) => a.name === 'agent1');
    expect(row?.status).toMatchObject({
      connected: true,
      applied: { 'gitops-project': { commit: next, result: 'applied' } },
    });
  });

  it('sends no desired state to an agent that reports it has the current commit', async () => {
    const probe = await connect('agent-current');
    const current = await probe.next('desired');
    probe.ws.close();
    const client = await connect('agent-current', {
      applied: { 'gitops-project': { commit: current.commit, digest: current.digest } },
    });
    await client.next('config');
    expect(await client.collect('desired', 700)).toEqual([]);
  });

  it('answers each bad JWT with a bare 401 and keeps serving a good agent', async () => {
    const good = generateToken();
    const agentId = (await listAgents(stateDir)).find((a) => a.name === 'agent-bad-jwt')!.id;
    const token = tokens['agent-bad-jwt'];
    const now = Math.floor(Date.now() / 1000);
    const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
    const claims = { aud: AUD, iat: now, exp: now + 60, jti: 'abcdefghijkl' };
    const hsInput = `${b64({ alg: 'HS256', typ: 'JWT', kid: agentId })}.${b64(claims)}`;
    const pub = (await listAgents(stateDir)).find((a) => a.name === 'agent-bad-jwt')!.publicKey;
    const replayed = await signAgentJwt(token, { audience: AUD });
    const used = await connectClient(server.connectUrl, ca, `Bearer ${replayed}`);
    clients.push(used);
    const bad: Record<string, string | undefined> = {
      'no header': undefined,
      'alg none': `Bearer ${b64({ alg: 'none', kid: agentId })}.${b64(claims)}.`,
      'HS256 with the public key': `Bearer ${hsInput}.${createHmac(
        'sha256',
        publicKeyFromX(pub).export({ type: 'spki', format: 'pem' }),
      )
        .update(hsInput)
        .digest('base64url')}`,
      expired: `Bearer ${await signAgentJwt(token, { audience: AUD, now: Date.now() - 600_000 })}`,
      'issued in the future': `Bearer ${await signAgentJwt(token, { audience: AUD, now: Date.now() + 600_000 })}`,
      'wrong audience': `Bearer ${await signAgentJwt(token, { audience: 'another-server' })}`,
      'replayed jti': `Bearer ${replayed}`,
      'unknown kid': `Bearer ${await signAgentJwt(good.token, { audience: AUD })}`,
      garbage: 'Bearer not.a.jwt',
    };
    for (const [name, header] of Object.entries(bad)) {
      expect([name, await upgradeStatus(server.connectUrl, ca, header)]).toEqual([name, 401]);
    }
    const client = await connect('agent1');
    await client.next('desired');
    const logs = logLines.join('\n');
    expect(logs).toContain('JWT_REPLAYED');
    expect(logs).not.toContain(replayed.split('.')[2]);
    expect(logs).not.toContain(token.slice(13));
  });

  it('closes only the connection that sends a malformed or oversized frame', async () => {
    const bystander = await connect('agent-frames');
    await bystander.next('desired');
    const malformed = await connect('agent-frames');
    await malformed.next('config');
    malformed.ws.send('{"type":"status", "oops": ');
    expect((await malformed.closed).code).toBe(CloseCode.INVALID_MESSAGE);
    const unknown = await connect('agent-frames');
    await unknown.next('config');
    unknown.ws.send(JSON.stringify({ type: 'launch-missiles' }));
    expect((await unknown.closed).code).toBe(CloseCode.INVALID_MESSAGE);
    const big = await connect('agent-frames');
    await big.next('config');
    big.ws.send(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x20), { binary: false });
    expect((await big.closed).code).toBe(CloseCode.MESSAGE_TOO_BIG);
    expect(bystander.ws.readyState).toBe(bystander.ws.OPEN);
    const next = await manifestRepo.commit({
      files: { 'other.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n' },
    });
    await webhook('gitops-project');
    expect((await bystander.next('desired', 2000)).commit).toBe(next);
  });

  it('closes a live session within a second of `agent revoke` run as a separate process', async () => {
    expect(existsSync(CLI)).toBe(true);
    const client = await connect('agent-revoke');
    await client.next('config');
    await run(process.execPath, [CLI, 'agent', 'revoke', 'agent-revoke', '--state-dir', stateDir]);
    // The clock starts when the command's write lands (node's own start-up is not the server's latency).
    const written = (await stat(path.join(stateDir, 'agents.json'))).mtimeMs;
    const closed = await client.closed;
    expect(closed.code).toBe(CloseCode.REVOKED);
    expect(closed.at - written).toBeLessThan(1000);
    process.stderr.write(`revoke → session closed: ${Math.round(closed.at - written)} ms\n`);
    expect(
      await upgradeStatus(
        server.connectUrl,
        ca,
        `Bearer ${await signAgentJwt(tokens['agent-revoke'], { audience: AUD })}`,
      ),
    ).toBe(401);
  });

  it('reports an invalid config.yaml to the agent and in agent list while the last valid config stays in force', async () => {
    const client = await connect('agent-bad-config');
    await client.next('desired');
    await configRepo.commit({
      files: { '.gitlab/agents/agent-bad-config/config.yaml': `${CONFIG}    unknown_key: 1\n` },
    });
    await webhook('kubernetes-agent');
    const error = await client.next('error', 3000);
    expect(error.problems[0].message).toContain('.gitlab/agents/agent-bad-config/config.yaml');
    await new Promise((r) => setTimeout(r, 800));
    const { stdout } = await run(process.execPath, [CLI, 'agent', 'list', '-o', 'json', '--state-dir', stateDir]);
    const row = (
      JSON.parse(stdout) as Array<{ name: string; status?: { configProblems?: Array<{ message: string }> } }>
    ).find((r) => r.name === 'agent-bad-config');
    expect(row?.status?.configProblems?.[0].message).toContain('config.yaml');
    const table = (await run(process.execPath, [CLI, 'agent', 'list', '--state-dir', stateDir])).stdout;
    expect(table).toMatch(/agent-bad-config .*config\.yaml/);
    // Still following gitops-project under the last valid config.
    const next = await manifestRepo.commit({ files: { 'manifest.yaml': deployment(4) } });
    await webhook('gitops-project');
    expect((await client.next('desired', 2000)).commit).toBe(next);
  });

  it('reports an unreachable Git host to the agent and keeps the session, then clears it when the host is back', async () => {
    const client = await connect('agent-unreachable');
    await client.next('desired');
    await gitServer.stop();
    try {
      await webhook('gitops-project');
      const error = await client.next('error', 10_000);
      expect(error.project).toBe('gitops-project');
      expect(error.problems.length).toBeGreaterThan(0);
      expect(client.ws.readyState).toBe(client.ws.OPEN);
      await new Promise((r) => setTimeout(r, 800));
      const row = (await listAgents(stateDir)).find((a) => a.name === 'agent-unreachable');
      expect(row?.status?.sourceProblems?.['gitops-project']).toBeDefined();
      expect((await run(process.execPath, [CLI, 'agent', 'list', '--state-dir', stateDir])).stdout).toMatch(
        /agent-unreachable .*cannot reach the Git host/,
      );
    } finally {
      await gitServer.start();
    }
    // Back without a new commit: the agent is told the problem cleared and agent list stops showing it.
    await webhook('gitops-project');
    const cleared = await client.next('error', 5000);
    expect(cleared).toEqual({ type: 'error', project: 'gitops-project', problems: [] });
    expect(await client.collect('desired', 300)).toEqual([]);
    await new Promise((r) => setTimeout(r, 800));
    const row = (await listAgents(stateDir)).find((a) => a.name === 'agent-unreachable');
    expect(row?.status?.sourceProblems).toBeUndefined();
    expect((await run(process.execPath, [CLI, 'agent', 'list', '--state-dir', stateDir])).stdout).toMatch(
      /agent-unreachable .* -\n/,
    );
  });

  it('keeps apply errors per project and clears one when a later apply of that project succeeds', async () => {
    const client = await connect('agent-errors');
    const desired = await client.next('desired');
    const status = (project: string, ok: boolean): void =>
      client.send({
        type: 'status',
        project,
        commit: desired.commit,
        digest: desired.digest,
        durationMs: 5,
        result: ok ? 'applied' : 'failed',
        changes: ok
          ? [{ id: 'Deployment/default/nginx', action: 'configured' }]
          : [
              {
                id: 'Deployment/default/nginx',
                action: 'failed',
                error: 'Deployment/default/nginx: EACCES: permission denied',
              },
            ],
        errors: [],
      });
    const table = async (): Promise<string> => {
      await new Promise((r) => setTimeout(r, 800));
      return (
        (await run(process.execPath, [CLI, 'agent', 'list', '--state-dir', stateDir])).stdout
          .split('\n')
          .find((l) => l.startsWith('agent-errors ')) ?? ''
      );
    };
    status('gitops-project', false);
    status('other-project', false);
    expect(await table()).toContain('EACCES');
    status('gitops-project', true);
    const afterOne = await table();
    expect(afterOne).toMatch(/other-project: .*EACCES/);
    expect(
      Object.keys((await listAgents(stateDir)).find((a) => a.name === 'agent-errors')?.status?.projectErrors ?? {}),
    ).toEqual(['other-project']);
    status('other-project', true);
    expect(await table()).toMatch(/ -$/);
    expect((await listAgents(stateDir)).find((a) => a.name === 'agent-errors')?.status?.projectErrors).toBeUndefined();
  });

  it('serves health, readiness and metrics', async () => {
    const base = server.baseUrl.replace('wss:', 'https:');
    const get = (p: string): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        import('node:https').then(
          ({ default: https }) =>
            https
              .get(base + p, { ca }, (res) => {
                let body = '';
                res.on('data', (c: Buffer) => {
                  body += c.toString();
                });
                res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
              })
              .on('error', reject),
          reject,
        );
      });
    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/readyz')).status).toBe(200);
    const metrics = (await get('/metrics')).body;
    expect(metrics).toMatch(/gitops_server_auth_failures_total\{reason="JWT_REPLAYED"\} 1/);
    expect(metrics).toMatch(/gitops_server_connected_agents \d+/);
    expect(metrics).toMatch(/gitops_server_desired_pushes_total \d+/);
    expect((await get('/api/v1/agents')).status).toBe(404);
    expect(CONNECT_PATH).toBe('/api/v1/agent/connect');
  });
});
