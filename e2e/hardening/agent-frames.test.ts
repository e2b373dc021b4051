/**
 * Hardening, items 4, 6 and 7: what one agent (or one leaked agent token, or one noisy address)
 * can send the server. Against the real server process:
 *
 * (a) status frames with a 5 MiB project key close that session with MESSAGE_TOO_BIG (1009);
 *     the status shard, the server's peak memory and its log stay small; another agent keeps its
 *     session and gets the next commit;
 * (b) a ~30 MB status frame with 1M changes is refused before it is buffered (VmHWM stays low);
 * (c) status for a project the agent does not follow, and for `__proto__` / `constructor`, is not
 *     stored, and the agent is told once (an `error` message);
 * (d) one agent presenting 2,000 distinct valid JWTs gets 429 beyond its connection rate and
 *     session cap; another agent still connects and gets its desired state;
 * (e) 25 bad JWTs from 127.0.0.1, then a valid agent from the same address connects; with
 *     --trusted-proxy 127.0.0.1, bad attempts from one X-Forwarded-For address do not lock out
 *     another address behind the same proxy, nor a valid JWT from the first.
 *
 * Every number the issue asks for is printed on stderr (`[agent-frames] ...`).
 */
import { describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import WebSocket from 'ws';
import { signAgentJwt } from '../../src/protocol/jwt.js';
import { generateToken, parseToken } from '../../src/protocol/token.js';
import {
  TENANT_AUDIENCE,
  TENANT_MANIFEST_PROJECT,
  configMapManifest,
  useTenantServer,
  type TenantServer,
} from '../harness/server-process.js';
import type { TestClient } from '../server/client.js';
import { repoRoot } from '../harness/controlplane.js';
import { waitFor } from '../harness/wait.js';

const tenant = useTenantServer({ agents: [{ name: 'attacker' }, { name: 'bystander' }, { name: 'latecomer' }] });

const report = (label: string, values: Record<string, unknown>): void => {
  process.stderr.write(`[agent-frames] ${label}: ${JSON.stringify(values)}\n`);
};

async function shardBytes(ts: TenantServer): Promise<number> {
  const dir = path.join(ts.stateDir, 'status');
  const names = await readdir(dir).catch(() => [] as string[]);
  let total = 0;
  for (const n of names) total += (await stat(path.join(dir, n)).catch(() => ({ size: 0 }))).size;
  return total;
}

const logBytes = async (ts: TenantServer): Promise<number> => (await stat(ts.server.logPath)).size;

/** An upgrade with the given headers: 101 (then closed) or the refusal's status. */
function upgrade(ts: TenantServer, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(ts.connectUrl, { ca: ts.ca, headers });
    ws.once('open', () => {
      ws.terminate();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      ws.terminate();
      resolve(res.statusCode ?? 0);
    });
    ws.once('error', reject);
  });
}

/** A raw session for the attacker: hello sent, then whatever the test writes. */
async function rawSession(ts: TenantServer, name: string): Promise<{ ws: WebSocket; closed: Promise<number> }> {
  const ws = new WebSocket(ts.connectUrl, {
    ca: ts.ca,
    headers: { authorization: `Bearer ${await signAgentJwt(ts.tokens[name], { audience: TENANT_AUDIENCE })}` },
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_q, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  ws.on('error', () => undefined);
  ws.send(JSON.stringify({ type: 'hello', protocolVersion: 1, agentVersion: 'attack', applied: {} }));
  return { ws, closed };
}

/**
 * Upgrades with each JWT from a separate node process (16 at a time), each closed once open;
 * resolves to the HTTP statuses (101 = accepted, -1 = error).
 */
async function flood(ts: TenantServer, jwts: string[]): Promise<number[]> {
  const script = `
    import WebSocket from 'ws';
    import { readFileSync } from 'node:fs';
    const { url, ca, jwts } = JSON.parse(readFileSync(0, 'utf8'));
    const out = [];
    let next = 0;
    const one = (jwt) => new Promise((resolve) => {
      const ws = new WebSocket(url, { ca, headers: { authorization: 'Bearer ' + jwt } });
      ws.once('open', () => { ws.terminate(); resolve(101); });
      ws.once('unexpected-response', (_q, res) => { res.resume(); ws.terminate(); resolve(res.statusCode ?? 0); });
      ws.once('error', () => resolve(-1));
    });
    await Promise.all(Array.from({ length: 16 }, async () => { for (let i = next++; i < jwts.length; i = next++) out.push(await one(jwts[i])); }));
    process.stdout.write(JSON.stringify(out));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: repoRoot(),
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  child.stdin.end(JSON.stringify({ url: ts.connectUrl, ca: ts.ca, jwts }));
  let stdout = '';
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(killer);
  if (code !== 0) throw new Error(`flood process exited ${code}`);
  return JSON.parse(stdout) as number[];
}

const sha = (c: string): string => c.repeat(40);
const statusText = (project: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({
    type: 'status',
    project,
    commit: sha('a'),
    digest: 'd',
    result: 'failed',
    changes: [],
    errors: [{ code: 'X', message: 'boom' }],
    durationMs: 1,
    ...extra,
  });

/** The bystander: connected first, must keep its session and get the next commit. */
async function bystanderGetsNextCommit(ts: TenantServer, client: TestClient, value: string): Promise<void> {
  if (client.ws.readyState !== WebSocket.OPEN) {
    const closed = await client.closed;
    const lines = (await ts.logs()).filter((r) => r.agent === 'bystander').slice(-5);
    throw new Error(
      `bystander session closed (${closed.code} ${closed.reason}); server said: ${JSON.stringify(lines)}`,
    );
  }
  const commit = await ts.commit(TENANT_MANIFEST_PROJECT, { 'manifest.yaml': configMapManifest('tenant', value) });
  const desired = await waitFor(
    async () => client.messages.find((m) => m.type === 'desired' && m.commit === commit),
    15_000,
    `bystander gets ${commit}`,
  );
  expect(desired).toBeDefined();
  expect(client.ws.readyState).toBe(WebSocket.OPEN);
}

describe('agent frames against the real server', () => {
  let bystander: TestClient;

  it('(a) closes status frames with a 5 MiB project key with MESSAGE_TOO_BIG; shard, memory and log stay small', async () => {
    const ts = tenant();
    bystander = await ts.connect('bystander');
    await bystander.next('desired', 15_000);
    const before = { hwm: (await ts.memory()).hwmMiB, shard: await shardBytes(ts), log: await logBytes(ts) };
    const probe = ts.watchHealthz(20);
    const key = 'k'.repeat(5 * 1024 * 1024);
    const codes: number[] = [];
    for (let i = 0; i < 10; i++) {
      const { ws, closed } = await rawSession(ts, 'attacker');
      ws.send(statusText(`${key}${i}`));
      codes.push(
        await Promise.race([
          closed,
          new Promise<number>((r) =>
            setTimeout(() => {
              ws.terminate();
              r(-1);
            }, 5_000),
          ),
        ]),
      );
    }
    await new Promise((r) => setTimeout(r, 1500)); // a status flush (debounced 500 ms) would have happened
    const health = await probe.stop();
    const after = { hwm: (await ts.memory()).hwmMiB, shard: await shardBytes(ts), log: await logBytes(ts) };
    report('(a) 10 x 5 MiB project key', {
      closeCodes: codes,
      hwmMiB: [Math.round(before.hwm), Math.round(after.hwm)],
      shardBytes: [before.shard, after.shard],
      logGrowthBytes: after.log - before.log,
      healthzMaxMs: Math.round(health.maxMs),
    });
    expect(ts.alive()).toBe(true);
    expect(codes).toEqual(Array(10).fill(1009));
    expect(after.shard).toBeLessThan(64 * 1024);
    expect(after.hwm - before.hwm).toBeLessThan(64);
    expect(after.log - before.log).toBeLessThan(256 * 1024);
    expect(health.failures).toBe(0);
    await bystanderGetsNextCommit(ts, bystander, 'after-a');
  }, 90_000);

  it('(b) refuses a ~30 MB frame with 1M changes before buffering it', async () => {
    const ts = tenant();
    const before = (await ts.memory()).hwmMiB;
    const change = '{"id":"a","action":"created"},';
    const frame = `{"type":"status","project":"${TENANT_MANIFEST_PROJECT}","commit":"${sha('b')}","digest":"d","result":"applied","errors":[],"durationMs":1,"changes":[${change.repeat(1_000_000 - 1)}{"id":"a","action":"created"}]}`;
    const { ws, closed } = await rawSession(ts, 'attacker');
    const t0 = performance.now();
    ws.send(frame);
    const code = await Promise.race([
      closed,
      new Promise<number>((r) =>
        setTimeout(() => {
          ws.terminate();
          r(-1);
        }, 30_000),
      ),
    ]);
    const ms = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 1000));
    const after = (await ts.memory()).hwmMiB;
    report('(b) 1M changes', {
      frameMiB: Math.round(frame.length / 1048576),
      closeCode: code,
      closeMs: Math.round(ms),
      hwmMiB: [Math.round(before), Math.round(after)],
    });
    expect(ts.alive()).toBe(true);
    expect(code).toBe(1009);
    expect(after - before).toBeLessThan(40);
    await bystanderGetsNextCommit(ts, bystander, 'after-b');
  }, 90_000);

  it('(c) stores no status for a project the agent does not follow, nor for __proto__ or constructor, and tells the agent once', async () => {
    const ts = tenant();
    const attacker = await ts.connect('attacker');
    await attacker.next('desired', 15_000);
    for (const project of ['tenant-b/secret-manifests', '__proto__', 'constructor'])
      attacker.send(JSON.parse(statusText(project)) as never);
    attacker.ws.send(
      `{"type":"drift","project":"__proto__","commit":"${sha('c')}","object":"ConfigMap/default/x","action":"reverted","patch":[],"at":"now"}`,
    );
    // A status of its own project is stored: the refusal is about the key, not the agent.
    attacker.send(JSON.parse(statusText(TENANT_MANIFEST_PROJECT)) as never);
    const row = await waitFor(
      async () => {
        const r = await ts.agentRow('attacker');
        return r.status?.projectErrors?.[TENANT_MANIFEST_PROJECT] ? r : undefined;
      },
      15_000,
      'the attacker status of its own project in agent list',
    );
    const applied = Object.keys(row.status?.applied ?? {});
    const errors = Object.keys(row.status?.projectErrors ?? {});
    const told = attacker.messages.filter(
      (m) => m.type === 'error' && m.problems.some((p) => p.code === 'REPORT_REFUSED'),
    );
    report('(c) foreign project keys', {
      appliedKeys: applied,
      projectErrorKeys: errors,
      lastDrift: row.status?.lastDrift?.project,
      refusedMessages: told.length,
    });
    expect(applied).toEqual([TENANT_MANIFEST_PROJECT]);
    expect(errors).toEqual([TENANT_MANIFEST_PROJECT]);
    expect(row.status?.lastDrift).toBeUndefined();
    expect(told).toHaveLength(1);
    expect(
      (await ts.logs()).filter((r) => r.msg === 'report refused: not a manifest project of this agent'),
    ).toHaveLength(1);
    attacker.ws.terminate();
  }, 60_000);

  it('(d) holds one agent with 2,000 valid JWTs to its rate, and another agent still connects', async () => {
    const ts = tenant();
    // Signed in small batches: 2,000 at once would stall this process past the bystander's
    // 1 s heartbeat (the harness's interval) and cut its session for reasons of the test's own.
    const jwts: string[] = [];
    while (jwts.length < 2000) {
      jwts.push(
        ...(await Promise.all(
          Array.from({ length: 20 }, () =>
            signAgentJwt(ts.tokens.attacker, { audience: TENANT_AUDIENCE, ttlSeconds: 300 }),
          ),
        )),
      );
      await new Promise((r) => setTimeout(r, 5));
    }
    // The flood runs in a child process, as an attacker's would: in this process it would starve
    // the bystander's pong answers (the harness pings every second) and test the test, not the server.
    const t0 = performance.now();
    const probe = ts.watchHealthz(50);
    process.stderr.write(`[agent-frames] flood start ${new Date().toISOString()}\n`);
    const statuses = await flood(ts, jwts);
    process.stderr.write(`[agent-frames] flood end ${new Date().toISOString()}\n`);
    const health = await probe.stop();
    const seconds = (performance.now() - t0) / 1000;
    const accepted = statuses.filter((s) => s === 101).length;
    const refused = statuses.filter((s) => s === 429).length;
    const latecomer = await ts.connect('latecomer');
    const desired = await latecomer.next('desired', 15_000);
    const metrics = (await ts.get('/metrics')).body
      .split('\n')
      .filter((l) => l.startsWith('gitops_server_agent_limited_total'));
    report('(d) 2,000 JWTs of one agent', {
      accepted,
      refused,
      other: statuses.length - accepted - refused,
      seconds: Math.round(seconds),
      healthzMaxMs: Math.round(health.maxMs),
      latecomer: desired.commit.slice(0, 12),
      metrics,
    });
    expect(ts.alive()).toBe(true);
    // The limits are per minute (a burst of 20 connections then 10 a minute; 20 refusal lines a
    // minute), and a loaded machine stretches the flood (7 s idle, 25 s beside six builds, over a
    // minute seen): the bounds grow with the minutes the flood spanned.
    const minutes = Math.ceil(seconds / 60) + 1;
    expect(accepted).toBeLessThanOrEqual(20 + 10 * minutes);
    expect(refused).toBeGreaterThanOrEqual(2000 - 20 - 10 * minutes);
    expect(statuses.filter((s) => s === 401)).toHaveLength(0);
    const refusals = (await ts.logs()).filter((r) => r.msg === 'agent connection refused: over a per-agent limit');
    expect(refusals.length).toBeGreaterThan(0);
    expect(refusals.length).toBeLessThanOrEqual(20 * minutes + 5);
    expect(JSON.stringify(refusals)).not.toContain(jwts[1999]);
    await bystanderGetsNextCommit(ts, bystander, 'after-d');
    latecomer.ws.terminate();
  }, 180_000);

  it('(e) lets a valid JWT through after 25 bad ones from its address, and keys failures by forwarded address behind a trusted proxy', async () => {
    const ts = tenant();
    const forged = async (): Promise<string> =>
      `Bearer ${await signAgentJwt({ ...parseToken(generateToken().token), agentId: parseToken(ts.tokens.latecomer).agentId }, { audience: TENANT_AUDIENCE })}`;
    const bad: number[] = [];
    // Signed with another key but claiming the latecomer: the very key (address + kid) its valid JWT uses.
    for (let i = 0; i < 25; i++) bad.push(await upgrade(ts, { authorization: await forged() }));
    const garbage = await upgrade(ts, { authorization: 'Bearer garbage' });
    const valid = await upgrade(ts, {
      authorization: `Bearer ${await signAgentJwt(ts.tokens.latecomer, { audience: TENANT_AUDIENCE })}`,
    });
    const other = await upgrade(ts, {
      authorization: `Bearer ${await signAgentJwt(ts.tokens.bystander, { audience: TENANT_AUDIENCE })}`,
    });
    report('(e) 25 bad JWTs from 127.0.0.1', {
      bad: bad.join(','),
      garbage,
      validSameAgent: valid,
      validOtherAgent: other,
    });
    expect(bad.slice(0, 20).every((s) => s === 401)).toBe(true);
    expect(bad.slice(20).every((s) => s === 429)).toBe(true);
    expect(garbage).toBe(401);
    expect(valid).toBe(101);
    expect(other).toBe(101);

    await ts.restart(['--trusted-proxy', '127.0.0.1']);
    const from = (xff: string, authorization: string): Promise<number> =>
      upgrade(ts, { authorization, 'x-forwarded-for': xff });
    const one: number[] = [];
    for (let i = 0; i < 25; i++) one.push(await from('198.51.100.1', 'Bearer garbage'));
    const two = await from('198.51.100.2', 'Bearer garbage');
    const spoofed = await from('203.0.113.9, 198.51.100.1', 'Bearer garbage');
    const validFromOne = await from(
      '198.51.100.1',
      `Bearer ${await signAgentJwt(ts.tokens.latecomer, { audience: TENANT_AUDIENCE })}`,
    );
    report('(e) behind a trusted proxy', {
      first: one.join(','),
      second: two,
      spoofedPrefix: spoofed,
      validFromFirst: validFromOne,
    });
    expect(one.slice(0, 20).every((s) => s === 401)).toBe(true);
    expect(one.slice(20).every((s) => s === 429)).toBe(true);
    expect(two).toBe(401);
    expect(spoofed).toBe(429);
    expect(validFromOne).toBe(101);
    const failures = (await ts.logs()).filter((r) => r.msg === 'agent authentication failed');
    expect(failures.some((r) => r.remote === '198.51.100.1')).toBe(true);
    expect(ts.alive()).toBe(true);
  }, 120_000);
});
