import { describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { judge, loadTls, subjectAltNames } from './tls.js';

const run = promisify(execFile);
const stateDir = (): Promise<string> => mkdtemp(path.join(tmpdir(), 'gitops-tls-'));

describe('self-signed TLS', () => {
  it('serves a leaf (not a CA) issued by ca.crt, and keeps no key that could issue another', async () => {
    const dir = await stateDir();
    const tls = await loadTls({ mode: 'self-signed' }, dir, ['10.1.2.3', 'gitops.internal']);
    expect(tls).toMatchObject({ certPath: path.join(dir, 'ca.crt'), created: 'new' });
    const ext = (
      await run('openssl', [
        'x509',
        '-in',
        path.join(dir, 'tls.crt'),
        '-noout',
        '-ext',
        'basicConstraints,keyUsage,extendedKeyUsage,subjectAltName',
      ])
    ).stdout;
    expect(ext).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(ext).toMatch(/Key Usage: critical\s+Digital Signature\s/);
    expect(ext).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication\s/);
    expect(ext).toMatch(/IP Address:10\.1\.2\.3/);
    expect(ext).toContain('DNS:gitops.internal');
    expect(
      (await run('openssl', ['x509', '-in', path.join(dir, 'ca.crt'), '-noout', '-ext', 'basicConstraints'])).stdout,
    ).toMatch(/CA:TRUE, pathlen:0/);
    expect(
      (await run('openssl', ['verify', '-CAfile', path.join(dir, 'ca.crt'), path.join(dir, 'tls.crt')])).stdout,
    ).toContain(': OK');
    // Agents pointed at tls.crt before ca.crt existed keep working: the chain ends with the CA.
    expect(
      (await run('openssl', ['verify', '-CAfile', path.join(dir, 'tls.crt'), path.join(dir, 'tls.crt')])).stdout,
    ).toContain(': OK');

    expect((await readdir(dir)).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
    expect((await stat(path.join(dir, 'tls.key'))).mode & 0o777).toBe(0o600);
    const leaf = new X509Certificate(await readFile(path.join(dir, 'tls.crt'), 'utf8'));
    const ca = new X509Certificate(await readFile(path.join(dir, 'ca.crt'), 'utf8'));
    const keyPub = createPublicKey(createPrivateKey(await readFile(path.join(dir, 'tls.key'), 'utf8'))).export({
      type: 'spki',
      format: 'der',
    });
    expect(keyPub.equals(leaf.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
    expect(keyPub.equals(ca.publicKey.export({ type: 'spki', format: 'der' }))).toBe(false);
    expect(tls?.fingerprint).toBe(ca.fingerprint256);
  });

  it('reuses the set on the next start, and replaces a tls.crt that is itself a CA (the old layout)', async () => {
    const dir = await stateDir();
    const first = await loadTls({ mode: 'self-signed' }, dir);
    const again = await loadTls({ mode: 'self-signed' }, dir);
    expect(again).toEqual({ ...first, created: undefined });
    const old = path.join(dir, 'old');
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '30',
      '-subj',
      '/CN=old',
      '-keyout',
      `${old}.key`,
      '-out',
      `${old}.crt`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
    ]);
    const legacy = await stateDir();
    await writeFile(path.join(legacy, 'tls.crt'), await readFile(`${old}.crt`));
    await writeFile(path.join(legacy, 'tls.key'), await readFile(`${old}.key`));
    const replaced = await loadTls({ mode: 'self-signed' }, legacy);
    expect(replaced?.created).toBe('was-a-ca');
    expect(new X509Certificate(await readFile(path.join(legacy, 'tls.crt'), 'utf8')).ca).toBe(false);
    expect(judge(await readFile(`${old}.crt`, 'utf8'), await readFile(`${old}.crt`, 'utf8'))).toBe('was-a-ca');
  });

  it('judges a leaf from another CA unusable and one about to expire as expiring', async () => {
    const a = await stateDir();
    const b = await stateDir();
    await loadTls({ mode: 'self-signed' }, a);
    await loadTls({ mode: 'self-signed' }, b);
    const [caA, chainA, caB] = await Promise.all([
      readFile(path.join(a, 'ca.crt'), 'utf8'),
      readFile(path.join(a, 'tls.crt'), 'utf8'),
      readFile(path.join(b, 'ca.crt'), 'utf8'),
    ]);
    expect(judge(caA, chainA)).toBe('keep');
    expect(judge(caB, chainA)).toBe('unreadable');
    expect(judge(caA, 'not a certificate')).toBe('unreadable');
    expect(judge(caA, chainA, Date.parse(new X509Certificate(chainA).validTo) - 3_600_000)).toBe('expiring');
  });

  it('names localhost, the loopback addresses, this host and the listen address', () => {
    expect(subjectAltNames(['192.168.1.5', '::2', 'example.org'], 'box')).toBe(
      'DNS:localhost,IP:127.0.0.1,IP:::1,DNS:box,IP:192.168.1.5,IP:::2,DNS:example.org',
    );
  });
});
