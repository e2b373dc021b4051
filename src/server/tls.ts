/**
 * TLS material for the server: the configured certificate files, or for trials a self-signed
 * setup kept in the state dir:
 *
 * - `ca.crt`: a CA certificate made for this state dir, the file agents trust (`--ca-file`). Its
 *   private key lives only in memory while the leaf is signed and is then dropped, so nothing on
 *   disk can issue another certificate that agents would trust.
 * - `tls.crt`: the served chain, a leaf certificate (CA:FALSE, digitalSignature, serverAuth; SANs
 *   for localhost, 127.0.0.1, ::1, this host's name and the listen address) followed by `ca.crt`,
 *   so agents set up with `--ca-file <state-dir>/tls.crt` before `ca.crt` existed keep working.
 * - `tls.key`: the leaf's key, mode 0600.
 *
 * The pair is reused across restarts while the leaf is valid for at least a day and was issued by
 * `ca.crt`, so agents keep connecting. A state dir from before (where `tls.crt` was itself a CA
 * with its key beside it) is replaced once, with a warning: agents must trust the new `ca.crt`.
 * Made with the `openssl` CLI (EC P-256, SHA-256); the CA key reaches it through a pipe only.
 */
import { spawn } from 'node:child_process';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { UserError } from '../common/errors.js';
import type { TlsOptions } from './options.js';

export const SELF_SIGNED_CA = 'ca.crt';
export const SELF_SIGNED_CERT = 'tls.crt';
export const SELF_SIGNED_KEY = 'tls.key';
const VALID_DAYS = 365;
const RENEW_BEFORE_MS = 86_400_000;

export interface TlsMaterial {
  cert: string;
  key: string;
  /**
   * SHA-256 fingerprint of the certificate agents trust, colon-separated hex as `openssl x509 -fingerprint -sha256`
   * prints it.
   */
  fingerprint: string;
  /** Path of the certificate file agents should trust (self-signed mode: `ca.crt`; with files: --tls-cert). */
  certPath: string;
  /** Self-signed mode: why the certificate was (re)made this start, when it was. */
  created?: 'new' | 'expiring' | 'was-a-ca' | 'unreadable';
}

/** Loads or creates the certificate and key; undefined in plaintext mode. */
export async function loadTls(
  options: TlsOptions,
  stateDir: string,
  extraNames: string[] = [],
): Promise<TlsMaterial | undefined> {
  if (options.mode === 'plaintext') return undefined;
  if (options.mode === 'files') {
    const [cert, key] = await Promise.all([fs.readFile(options.cert, 'utf8'), fs.readFile(options.key, 'utf8')]);
    return { cert, key, fingerprint: fingerprintOf(cert, options.cert), certPath: options.cert };
  }
  const files = {
    ca: path.join(stateDir, SELF_SIGNED_CA),
    cert: path.join(stateDir, SELF_SIGNED_CERT),
    key: path.join(stateDir, SELF_SIGNED_KEY),
  };
  const existing = await Promise.all([
    fs.readFile(files.ca, 'utf8'),
    fs.readFile(files.cert, 'utf8'),
    fs.readFile(files.key, 'utf8'),
  ]).catch(() => undefined);
  const verdict = existing ? judge(existing[0], existing[1]) : await legacyVerdict(files.cert);
  if (verdict === 'keep' && existing) {
    return {
      cert: existing[1],
      key: existing[2],
      fingerprint: fingerprintOf(existing[0], files.ca),
      certPath: files.ca,
    };
  }
  await generate(files, extraNames);
  const [ca, cert, key] = await Promise.all([
    fs.readFile(files.ca, 'utf8'),
    fs.readFile(files.cert, 'utf8'),
    fs.readFile(files.key, 'utf8'),
  ]);
  return {
    cert,
    key,
    fingerprint: fingerprintOf(ca, files.ca),
    certPath: files.ca,
    created: verdict === 'keep' ? 'unreadable' : verdict,
  };
}

type Verdict = 'keep' | NonNullable<TlsMaterial['created']>;

/** Whether the stored leaf can be served again: not a CA, issued by ca.crt, valid for a day more. */
export function judge(caPem: string, chainPem: string, now = Date.now()): Verdict {
  try {
    const leaf = new X509Certificate(chainPem);
    const ca = new X509Certificate(caPem);
    if (leaf.ca) return 'was-a-ca';
    if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey)) return 'unreadable';
    return Date.parse(leaf.validTo) - now > RENEW_BEFORE_MS ? 'keep' : 'expiring';
  } catch {
    return 'unreadable';
  }
}

/** No complete set: a state dir from before ca.crt (tls.crt itself a CA), or nothing yet. */
async function legacyVerdict(certPath: string): Promise<Verdict> {
  const old = await fs.readFile(certPath, 'utf8').catch(() => undefined);
  if (old === undefined) return 'new';
  try {
    return new X509Certificate(old).ca ? 'was-a-ca' : 'unreadable';
  } catch {
    return 'unreadable';
  }
}

/** Subject alternative names for the leaf. */
export function subjectAltNames(extraNames: string[], host = hostname()): string {
  const names = new Set(['DNS:localhost', 'IP:127.0.0.1', 'IP:::1', `DNS:${host}`]);
  for (const n of extraNames) names.add(/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`);
  return [...names].join(',');
}

async function generate(files: { ca: string; cert: string; key: string }, extraNames: string[]): Promise<void> {
  const tmp = {
    ca: `${files.ca}.${process.pid}.tmp`,
    leaf: `${files.cert}.${process.pid}.leaf.tmp`,
    cert: `${files.cert}.${process.pid}.tmp`,
    key: `${files.key}.${process.pid}.tmp`,
  };
  const newKey = (): string =>
    generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
  try {
    // The CA key exists only in this variable and openssl's stdin; it is never written.
    const caKey = newKey();
    await fs.writeFile(tmp.key, newKey(), { mode: 0o600 });
    await openssl(
      [
        'req',
        '-x509',
        '-new',
        '-key',
        '/dev/stdin',
        '-sha256',
        '-days',
        String(VALID_DAYS),
        '-subj',
        '/CN=gitops-server self-signed CA',
        '-addext',
        'basicConstraints=critical,CA:TRUE,pathlen:0',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
        '-out',
        tmp.ca,
      ],
      caKey,
    );
    await openssl(
      [
        'req',
        '-x509',
        '-new',
        '-key',
        tmp.key,
        '-CA',
        tmp.ca,
        '-CAkey',
        '/dev/stdin',
        '-sha256',
        '-days',
        String(VALID_DAYS),
        '-subj',
        '/CN=gitops-server',
        '-addext',
        `subjectAltName=${subjectAltNames(extraNames)}`,
        '-addext',
        'basicConstraints=critical,CA:FALSE',
        '-addext',
        'keyUsage=critical,digitalSignature',
        '-addext',
        'extendedKeyUsage=serverAuth',
        '-out',
        tmp.leaf,
      ],
      caKey,
    );
    const [leaf, ca] = await Promise.all([fs.readFile(tmp.leaf, 'utf8'), fs.readFile(tmp.ca, 'utf8')]);
    await fs.writeFile(tmp.cert, leaf + ca, { mode: 0o644 });
    await fs.chmod(tmp.ca, 0o644);
    // Key first, ca.crt last: a crash in between leaves a set judge() refuses, made anew next start.
    await fs.rename(tmp.key, files.key);
    await fs.rename(tmp.cert, files.cert);
    await fs.rename(tmp.ca, files.ca);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr;
    throw new UserError(
      'TLS_GENERATE_FAILED',
      `${files.cert}: cannot create a self-signed certificate with openssl: ${stderr?.trim() || (err as Error).message}`,
      { cause: err },
    );
  } finally {
    await Promise.all(Object.values(tmp).map((f) => fs.rm(f, { force: true })));
  }
}

/**
 * Runs openssl with `stdin` readable as /dev/stdin. Through `cat |`: Node hands a child a socket
 * pair, which /dev/stdin cannot open, and openssl takes keys from files only.
 */
function openssl(args: string[], stdin: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', 'cat | openssl "$@"', 'sh', ...args], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve()
        : reject(Object.assign(new Error(`openssl ${args[0]} exited ${String(code)}`), { stderr })),
    );
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}

function fingerprintOf(pem: string, file: string): string {
  try {
    return new X509Certificate(pem).fingerprint256;
  } catch (err) {
    throw new UserError('TLS_BAD_CERT', `${file}: not a PEM certificate`, { cause: err });
  }
}
