import { describe, expect, it } from '@jest/globals';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { resolveServeOptions } from './options.js';

describe('resolveServeOptions', () => {
  it('fills documented defaults and freezes the result', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'gitops-opt-'));
    const options = resolveServeOptions({ tlsSelfSigned: true, gitRoot: root });
    expect(options).toMatchObject({ listen: { host: '0.0.0.0', port: 8443 }, pollIntervalMs: 15_000, audience: 'gitops-server', tls: { mode: 'self-signed' }, git: { mode: 'local', root } });
    expect(Object.isFrozen(options)).toBe(true);
  });

  it('lists every problem at once', () => {
    let message = '';
    try {
      resolveServeOptions({ listen: 'localhost', tlsSelfSigned: true, insecurePlaintext: true, pollInterval: 'soon', logLevel: 'loud', webhookSecret: 'short' });
    } catch (err) {
      message = (err as Error).message;
    }
    for (const flag of ['--listen', 'TLS: choose one', 'Git: give', '--poll-interval', '--log-level', '--webhook-secret']) expect(message).toContain(flag);
  });

  it('reads secrets from files, refuses short ones, and never puts URL credentials in a message', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'gitops-opt-'));
    await writeFile(path.join(dir, 'token'), 'glpat-0123456789abcdef\n');
    await writeFile(path.join(dir, 'short'), 'abc\n');
    const options = resolveServeOptions({ insecurePlaintext: true, gitBaseUrl: 'https://git.example.com/', gitTokenFile: path.join(dir, 'token'), adminTokenFile: path.join(dir, 'token') });
    expect(options.git).toEqual({ mode: 'http', baseUrl: 'https://git.example.com', token: 'glpat-0123456789abcdef' });
    expect(options.adminToken).toBe('glpat-0123456789abcdef');
    expect(() => resolveServeOptions({ insecurePlaintext: true, gitRoot: dir, webhookSecretFile: path.join(dir, 'short') })).toThrow(/at least 16/);
    expect(() => resolveServeOptions({ insecurePlaintext: true, gitBaseUrl: 'https://user:hunter2@git.example.com' })).toThrow(/not in the URL/);
    try {
      resolveServeOptions({ insecurePlaintext: true, gitBaseUrl: 'https://user:hunter2@git.example.com' });
    } catch (err) {
      expect((err as Error).message).not.toContain('hunter2');
    }
  });
});
