import { describe, expect, it } from '@jest/globals';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseMetricsListen, resolveServeOptions } from './options.js';

describe('resolveServeOptions', () => {
  it('fills documented defaults and freezes the result', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'gitops-opt-'));
    const options = resolveServeOptions({ tlsSelfSigned: true, gitRoot: root });
    expect(options).toMatchObject({
      listen: { host: '0.0.0.0', port: 8443 },
      pollIntervalMs: 15_000,
      audience: 'gitops-server',
      tls: { mode: 'self-signed' },
      git: { mode: 'local', root },
    });
    expect(Object.isFrozen(options)).toBe(true);
  });

  it('reads the TLS switches from their variables as booleans: "false" is off, an unknown word is a problem', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'gitops-opt-'));
    const env = { GITOPS_SERVER_TLS_SELF_SIGNED: 'true', GITOPS_SERVER_INSECURE_PLAINTEXT: 'false' };
    expect(resolveServeOptions({ gitRoot: root }, env).tls).toEqual({ mode: 'self-signed' });
    expect(() =>
      resolveServeOptions(
        { gitRoot: root },
        { GITOPS_SERVER_TLS_SELF_SIGNED: '1', GITOPS_SERVER_INSECURE_PLAINTEXT: 'flase' },
      ),
    ).toThrow(/GITOPS_SERVER_INSECURE_PLAINTEXT="flase": expected true or false/);
    // A flag beats its variable.
    expect(
      resolveServeOptions({ gitRoot: root, tlsSelfSigned: true }, { GITOPS_SERVER_TLS_SELF_SIGNED: 'off' }).tls,
    ).toEqual({ mode: 'self-signed' });
  });

  it('lists every problem at once', () => {
    let message = '';
    try {
      resolveServeOptions({
        listen: 'localhost',
        tlsSelfSigned: true,
        insecurePlaintext: true,
        pollInterval: 'soon',
        logLevel: 'loud',
        metricsListen: 'nowhere:',
      });
    } catch (err) {
      message = (err as Error).message;
    }
    for (const flag of [
      '--listen',
      'TLS: choose one',
      'Git: give',
      '--poll-interval',
      '--log-level',
      '--metrics-listen',
    ])
      expect(message).toContain(flag);
  });

  it('takes --trusted-proxy repeated or comma-separated (as the variable gives it) and names a bad entry', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'gitops-opt-'));
    expect(resolveServeOptions({ tlsSelfSigned: true, gitRoot: root }).trustedProxies).toEqual([]);
    expect(
      resolveServeOptions({ tlsSelfSigned: true, gitRoot: root, trustedProxy: ['127.0.0.1', '10.0.0.0/8, fd00::/8'] })
        .trustedProxies,
    ).toEqual(['127.0.0.1', '10.0.0.0/8', 'fd00::/8']);
    expect(() =>
      resolveServeOptions({ tlsSelfSigned: true, gitRoot: root, trustedProxy: ['10.0.0.0/8', 'proxy.internal'] }),
    ).toThrow(/--trusted-proxy: "proxy.internal" is not an IP address or CIDR/);
  });

  it('refuses a webhook secret on the command line (it shows in ps), naming the file flag, without echoing it', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'gitops-opt-'));
    let message = '';
    try {
      resolveServeOptions({ insecurePlaintext: true, gitRoot: root, webhookSecret: 'a-webhook-secret-in-argv' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('--webhook-secret-file');
    expect(message).toContain('ps');
    expect(message).not.toContain('a-webhook-secret-in-argv');
    await writeFile(path.join(root, 'hook'), 'a-webhook-secret-in-a-file\n');
    expect(
      resolveServeOptions({ insecurePlaintext: true, gitRoot: root, webhookSecretFile: path.join(root, 'hook') })
        .webhookSecret,
    ).toBe('a-webhook-secret-in-a-file');
  });

  it("puts --metrics-listen on loopback unless a host is named, and refuses the agents' port", async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'gitops-opt-'));
    expect(resolveServeOptions({ insecurePlaintext: true, gitRoot: root }).metricsListen).toBeUndefined();
    expect(
      resolveServeOptions({ insecurePlaintext: true, gitRoot: root, metricsListen: '9090' }).metricsListen,
    ).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(() =>
      resolveServeOptions({ insecurePlaintext: true, gitRoot: root, listen: '0.0.0.0:8443', metricsListen: '8443' }),
    ).toThrow(/same port as --listen/);
    expect(
      resolveServeOptions({ insecurePlaintext: true, gitRoot: root, listen: '127.0.0.1:0', metricsListen: ':0' })
        .metricsListen,
    ).toEqual({ host: '127.0.0.1', port: 0 });
  });

  it('reads secrets from files, refuses short ones, and never puts URL credentials in a message', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'gitops-opt-'));
    await writeFile(path.join(dir, 'token'), 'glpat-0123456789abcdef\n');
    await writeFile(path.join(dir, 'short'), 'abc\n');
    const options = resolveServeOptions({
      insecurePlaintext: true,
      gitBaseUrl: 'https://git.example.com/',
      gitTokenFile: path.join(dir, 'token'),
      adminTokenFile: path.join(dir, 'token'),
    });
    expect(options.git).toEqual({ mode: 'http', baseUrl: 'https://git.example.com', token: 'glpat-0123456789abcdef' });
    expect(options.adminToken).toBe('glpat-0123456789abcdef');
    expect(() =>
      resolveServeOptions({ insecurePlaintext: true, gitRoot: dir, webhookSecretFile: path.join(dir, 'short') }),
    ).toThrow(/at least 16/);
    expect(() =>
      resolveServeOptions({ insecurePlaintext: true, gitBaseUrl: 'https://user:hunter2@git.example.com' }),
    ).toThrow(/not in the URL/);
    try {
      resolveServeOptions({ insecurePlaintext: true, gitBaseUrl: 'https://user:hunter2@git.example.com' });
    } catch (err) {
      expect((err as Error).message).not.toContain('hunter2');
    }
  });
});

describe('parseMetricsListen', () => {
  it.each([
    ['9090', { host: '127.0.0.1', port: 9090 }],
    [':9090', { host: '127.0.0.1', port: 9090 }],
    ['0.0.0.0:9090', { host: '0.0.0.0', port: 9090 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['[::1]:9090', { host: '::1', port: 9090 }],
    [' 10.0.0.5:9100 ', { host: '10.0.0.5', port: 9100 }],
  ])('reads %j', (text, want) => {
    const problems: string[] = [];
    expect(parseMetricsListen(text, (p) => problems.push(p))).toEqual(want);
    expect(problems).toEqual([]);
  });

  it.each(['', 'host', 'host:', '70000', 'a:b:9090', '[::1]', 'http://x:9090', 'a b:9090'])(
    'refuses %j with the flag name',
    (text) => {
      const problems: string[] = [];
      expect(parseMetricsListen(text, (p) => problems.push(p))).toBeUndefined();
      expect(problems).toEqual([expect.stringContaining('--metrics-listen')]);
    },
  );
});
