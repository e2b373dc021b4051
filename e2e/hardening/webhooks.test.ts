/**
 * Hardening, items 8 and 11: what anyone who reaches the server's port can do without a secret.
 * Against the real server process (started with --metrics-listen 127.0.0.1:0):
 *
 * (a) the served self-signed certificate is a leaf (openssl: CA:FALSE, serverAuth), issued by the
 *     `caCert` agents trust, and no file in the state dir holds a key that could issue another;
 * (b) /metrics and the status API answer 404 on the agents' port and are served on the metrics port;
 * (c) 50 concurrent ~4.9 MB webhook bodies with no secret, a wrong GitLab token and a wrong GitHub
 *     signature: VmHWM stays bounded, /healthz stays fast, and a correct webhook afterwards still
 *     brings an agent its next commit;
 * (d) a flood of 120 refused webhooks from one address: 429 after 20, and one aggregated
 *     `webhooks refused` line per interval (the first at once, the rest at the interval's end or,
 *     as here, at shutdown), not one per request.
 *
 * The attack runs in a child process so that its TLS work does not delay this process's /healthz
 * probe. Every number is printed on stderr (`[webhooks] ...`).
 */
import { describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  TENANT_MANIFEST_PROJECT,
  configMapManifest,
  useTenantServer,
  type TenantServer,
} from '../harness/server-process.js';
import { readLogRecords, type LogRecord } from '../harness/log-records.js';
import { post } from '../server/client.js';

const run = promisify(execFile);
const tenant = useTenantServer({ agents: [{ name: 'agent1' }], serverArgs: ['--metrics-listen', '127.0.0.1:0'] });

const report = (label: string, values: Record<string, unknown>): void => {
  process.stderr.write(`[webhooks] ${label}: ${JSON.stringify(values)}\n`);
};

/**
 * The attacker: `count` concurrent POSTs of `bytes` each with the given headers, from a child
 * process; prints `{status or error code: count}`.
 */
const ATTACK = `
const https = await import('node:https');
const { readFileSync } = await import('node:fs');
const [url, caFile, count, bytes, headersJson] = process.argv.slice(1);
const ca = readFileSync(caFile);
const body = Buffer.alloc(Number(bytes), 'x');
const agent = new https.Agent({ ca, maxSockets: 1000 });
const one = () => new Promise((resolve) => {
  const req = https.request(url, { method: 'POST', agent, headers: { ...JSON.parse(headersJson), 'content-length': body.length } }, (res) => { res.resume(); res.on('end', () => resolve(String(res.statusCode))); });
  req.on('error', (e) => resolve(e.code ?? 'error'));
  req.end(body);
});
const counts = {};
for (const r of await Promise.all(Array.from({ length: Number(count) }, one))) counts[r] = (counts[r] ?? 0) + 1;
console.log(JSON.stringify(counts));
`;

async function attack(
  ts: TenantServer,
  source: string,
  headers: Record<string, string>,
  count: number,
  bytes: number,
): Promise<Record<string, number>> {
  const caFile = path.join(ts.dir, 'attack-ca.crt');
  await writeFile(caFile, ts.ca);
  const { stdout } = await run(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      ATTACK,
      `${ts.url}/api/v1/webhooks/${source}`,
      caFile,
      String(count),
      String(bytes),
      JSON.stringify(headers),
    ],
    { timeout: 60_000 },
  );
  return JSON.parse(stdout) as Record<string, number>;
}

async function listening(ts: TenantServer): Promise<LogRecord> {
  return ts.waitForLog((r) => r.msg === 'server listening', 5_000, 'server listening');
}

describe("webhooks and the server's public surface", () => {
  it('serves a leaf certificate that is not a CA, issued by the caCert agents trust, with no CA key in the state dir', async () => {
    const ts = tenant();
    const { stdout: served } = await run('sh', [
      '-c',
      `openssl s_client -connect 127.0.0.1:${new URL(ts.url).port} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -ext basicConstraints,keyUsage,extendedKeyUsage`,
    ]);
    report('served certificate', { extensions: served.replace(/\s+/g, ' ').trim() });
    expect(served).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(served).toMatch(/Key Usage: critical\s+Digital Signature\s/);
    expect(served).toContain('TLS Web Server Authentication');
    expect(served).not.toContain('Certificate Sign');
    const caCert = String((await listening(ts)).caCert);
    expect(path.basename(caCert)).toBe('ca.crt');
    expect((await run('openssl', ['verify', '-CAfile', caCert, path.join(ts.stateDir, 'tls.crt')])).stdout).toContain(
      ': OK',
    );
    const keys: string[] = [];
    for (const name of await readdir(ts.stateDir)) {
      const text = await readFile(path.join(ts.stateDir, name), 'utf8').catch(() => '');
      if (text.includes('PRIVATE KEY')) keys.push(name);
    }
    expect(keys).toEqual(['tls.key']);
    const { stdout: keyPub } = await run('openssl', ['pkey', '-in', path.join(ts.stateDir, 'tls.key'), '-pubout']);
    const { stdout: caPub } = await run('openssl', ['x509', '-in', caCert, '-noout', '-pubkey']);
    expect(keyPub).not.toBe(caPub);
  });

  it("answers /metrics and the status API with 404 on the agents' port and serves /metrics, /healthz and /readyz on --metrics-listen", async () => {
    const ts = tenant();
    const metricsUrl = String((await listening(ts)).metrics);
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await ts.get('/metrics')).status).toBe(404);
    expect((await ts.get('/api/v1/agents', { authorization: 'Bearer whatever-0123456789' })).status).toBe(404);
    expect((await ts.get('/healthz')).status).toBe(200);
    const metrics = await fetch(`${metricsUrl}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('gitops_server_connected_agents');
    expect((await fetch(`${metricsUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${metricsUrl}/readyz`)).status).toBe(200);
    expect((await fetch(`${metricsUrl}/api/v1/webhooks/gitlab`, { method: 'POST', body: '{}' })).status).toBe(404);
  });

  it('keeps memory bounded and /healthz fast under 50 concurrent 4.9 MB bodies without the secret, and a correct webhook still delivers the next commit', async () => {
    const ts = tenant();
    const agent = await ts.connect('agent1');
    await agent.next('desired', 10_000);
    const before = await ts.memory();
    const probe = ts.watchHealthz(20);
    const bytes = Math.round(4.9 * 1024 * 1024);
    const wrongSig = `sha256=${createHmac('sha256', 'not-the-secret').update(Buffer.alloc(bytes, 'x')).digest('hex')}`;
    // GitHub-style first, while this address has its whole minute: those bodies are read (8 at a time).
    const results = {
      githubWrongSignature: await attack(
        ts,
        'github',
        { 'x-hub-signature-256': wrongSig, 'x-github-event': 'push' },
        50,
        bytes,
      ),
      gitlabNoSecret: await attack(ts, 'gitlab', { 'x-gitlab-event': 'Push Hook' }, 50, bytes),
      gitlabWrongToken: await attack(ts, 'gitlab', { 'x-gitlab-token': 'wrong-token-0123456789abcdef' }, 50, bytes),
    };
    const health = await probe.stop();
    const after = await ts.memory();
    report('50 concurrent 4.9 MB bodies x3', { before, after, health, results });
    expect(ts.alive()).toBe(true);
    for (const counts of Object.values(results)) {
      expect(counts['202']).toBeUndefined();
      expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(50);
    }
    // Never more than 8 bodies read at once: the others are turned away unread (503, Retry-After).
    expect(results.githubWrongSignature['503']).toBeGreaterThan(0);
    expect(results.githubWrongSignature['401'] ?? 0).toBeLessThanOrEqual(20);
    // Before: 78 -> 358 MiB (GitLab, no secret) and 445 MiB (GitHub, wrong signature).
    expect(after.hwmMiB - before.hwmMiB).toBeLessThan(100);
    expect(after.hwmMiB).toBeLessThan(250);
    expect(health.failures).toBe(0);
    // Before: 1.8 s (probe in the attacking process) / 191 ms (probe in a process of its own).
    expect(health.maxMs).toBeLessThan(1_000);

    const sha = await ts.commit(TENANT_MANIFEST_PROJECT, {
      'manifest.yaml': configMapManifest('tenant', 'after-the-flood'),
    });
    const next = await agent.next('desired', 10_000);
    expect(next.commit).toBe(sha);
  }, 120_000);

  it('answers 429 after 20 refusals from an address and logs one aggregated line per interval, not one per request', async () => {
    const ts = tenant();
    // A fresh process: the flood above already used up this address's minute.
    await ts.restart();
    const statuses: Record<string, number> = {};
    for (let i = 0; i < 120; i++) {
      const status = await fetchStatus(ts, i % 2 ? { 'x-gitlab-token': `guess-${i}-0123456789abcdef` } : {});
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
    expect(statuses).toEqual({ 401: 20, 429: 100 });
    const during = (await ts.logs()).filter((r) => r.msg === 'webhooks refused');
    expect(during).toHaveLength(1);
    expect(during[0]).toMatchObject({ count: 1 });
    expect((await ts.logs()).filter((r) => r.msg === 'webhook refused')).toHaveLength(0);
    // A valid secret from the same address still gets through.
    expect(await ts.webhook(TENANT_MANIFEST_PROJECT)).toBe(202);
    const flooded = ts.server;
    await ts.restart();
    const all = (await readLogRecords(flooded.logPath)).filter((r) => r.msg === 'webhooks refused');
    report('flood of 120 refused webhooks', {
      statuses,
      lines: all.map((r) => ({ count: r.count, reasons: r.reasons, remotes: r.remotes })),
    });
    expect(all).toHaveLength(2);
    expect(all[1]).toMatchObject({
      count: 119,
      reasons: { 'gitlab:WEBHOOK_UNAUTHORIZED': 19, 'gitlab:rate-limited': 100 },
      remotes: { '127.0.0.1': 119 },
    });
    expect(JSON.stringify(all)).not.toContain(ts.webhookSecret);
  }, 60_000);
});

function fetchStatus(ts: TenantServer, headers: Record<string, string>): Promise<number> {
  return post(`${ts.url}/api/v1/webhooks/gitlab`, ts.ca, headers, '{"object_kind":"push"}');
}
