/**
 * TLS material for the server: the configured certificate files, or for trials a self-signed
 * certificate kept in the state dir (`tls.crt`, which agents trust as their CA file, and `tls.key`,
 * mode 0600). The self-signed pair is reused across restarts while it is valid for at least a day,
 * so agents configured with it keep connecting. Made with the `openssl` CLI (EC P-256, SHA-256,
 * SANs for localhost, 127.0.0.1, ::1 and this host's name).
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { UserError } from '../common/errors.js';
import type { TlsOptions } from './options.js';

const run = promisify(execFile);
export const SELF_SIGNED_CERT = 'tls.crt';
export const SELF_SIGNED_KEY = 'tls.key';

export interface TlsMaterial {
  cert: string;
  key: string;
  /** SHA-256 fingerprint, colon-separated hex, as `openssl x509 -fingerprint -sha256` prints it. */
  fingerprint: string;
  /** Path of the certificate file agents should trust (self-signed mode). */
  certPath: string;
}

/** Loads or creates the certificate and key; undefined in plaintext mode. */
export async function loadTls(options: TlsOptions, stateDir: string, extraNames: string[] = []): Promise<TlsMaterial | undefined> {
  if (options.mode === 'plaintext') return undefined;
  if (options.mode === 'files') {
    const [cert, key] = await Promise.all([fs.readFile(options.cert, 'utf8'), fs.readFile(options.key, 'utf8')]);
    return { cert, key, fingerprint: fingerprintOf(cert, options.cert), certPath: options.cert };
  }
  const certPath = path.join(stateDir, SELF_SIGNED_CERT);
  const keyPath = path.join(stateDir, SELF_SIGNED_KEY);
  const existing = await Promise.all([fs.readFile(certPath, 'utf8'), fs.readFile(keyPath, 'utf8')]).catch(() => undefined);
  if (existing && Date.parse(new X509Certificate(existing[0]).validTo) - Date.now() > 86_400_000) {
    return { cert: existing[0], key: existing[1], fingerprint: fingerprintOf(existing[0], certPath), certPath };
  }
  await generateSelfSigned(certPath, keyPath, extraNames);
  const [cert, key] = await Promise.all([fs.readFile(certPath, 'utf8'), fs.readFile(keyPath, 'utf8')]);
  return { cert, key, fingerprint: fingerprintOf(cert, certPath), certPath };
}

async function generateSelfSigned(certPath: string, keyPath: string, extraNames: string[]): Promise<void> {
  const names = new Set(['DNS:localhost', 'IP:127.0.0.1', 'IP:::1', `DNS:${hostname()}`]);
  for (const n of extraNames) names.add(/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`);
  const tmpCert = `${certPath}.${process.pid}.tmp`;
  const tmpKey = `${keyPath}.${process.pid}.tmp`;
  try {
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-sha256', '-nodes',
      '-days', '365', '-subj', '/CN=gitops-server', '-keyout', tmpKey, '-out', tmpCert,
      '-addext', `subjectAltName=${[...names].join(',')}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,digitalSignature,keyCertSign',
      '-addext', 'extendedKeyUsage=serverAuth',
    ]);
    await fs.chmod(tmpKey, 0o600);
    await fs.chmod(tmpCert, 0o644);
    await fs.rename(tmpKey, keyPath);
    await fs.rename(tmpCert, certPath);
  } catch (err) {
    await Promise.all([fs.rm(tmpCert, { force: true }), fs.rm(tmpKey, { force: true })]);
    const stderr = (err as { stderr?: string }).stderr;
    throw new UserError('TLS_GENERATE_FAILED', `${certPath}: cannot create a self-signed certificate with openssl: ${stderr?.trim() || (err as Error).message}`, { cause: err });
  }
}

function fingerprintOf(pem: string, file: string): string {
  try {
    return new X509Certificate(pem).fingerprint256;
  } catch (err) {
    throw new UserError('TLS_BAD_CERT', `${file}: not a PEM certificate`, { cause: err });
  }
}
