/**
 * The throw-away PKI of a test control plane, made with the `openssl` CLI: a CA, the apiserver's
 * serving certificate (127.0.0.1, localhost and the in-cluster names), client certificates for
 * the admin (`O=system:masters`) and the controller-manager (`CN=system:kube-controller-manager`,
 * which RBAC's bootstrap policy already grants), and the RSA key pair that signs ServiceAccount
 * tokens. EC P-256 keys for TLS because they are generated instantly.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Paths of the generated files (all PEM). */
export interface ControlPlaneCerts {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  controllerManagerCert: string;
  controllerManagerKey: string;
  /** Private key that signs ServiceAccount tokens (RSA). */
  serviceAccountKey: string;
  /** Its public key, which the apiserver verifies tokens with. */
  serviceAccountPub: string;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim() || String(err)}`, { cause: err });
  }
}

/** Makes a key and a certificate signed by the CA, with the given subject and extensions. */
async function issue(
  dir: string,
  name: string,
  subject: string,
  extensions: string[],
  ca: { cert: string; key: string },
): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  await writeFile(
    ext,
    [
      '[v3]',
      'basicConstraints = critical, CA:FALSE',
      'keyUsage = critical, digitalSignature, keyEncipherment',
      ...extensions,
      '',
    ].join('\n'),
  );
  await openssl([
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    key,
    '-out',
    csr,
    '-subj',
    subject,
  ]);
  await openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-set_serial',
    `0x${randomBytes(12).toString('hex')}`,
    '-days',
    '3650',
    '-sha256',
    '-extfile',
    ext,
    '-extensions',
    'v3',
    '-out',
    cert,
  ]);
  return { cert, key };
}

/** Generates every certificate and key the control plane needs into `dir`. */
export async function generateControlPlaneCerts(dir: string): Promise<ControlPlaneCerts> {
  const ca = { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
  const serviceAccountKey = join(dir, 'sa.key');
  const serviceAccountPub = join(dir, 'sa.pub');
  const saPair = (async () => {
    await openssl(['genrsa', '-out', serviceAccountKey, '2048']);
    await openssl(['rsa', '-in', serviceAccountKey, '-pubout', '-out', serviceAccountPub]);
  })();
  await openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    ca.key,
    '-out',
    ca.cert,
    '-days',
    '3650',
    '-sha256',
    '-subj',
    '/CN=gitops-test-ca',
  ]);
  const [server, admin, cm] = await Promise.all([
    issue(
      dir,
      'apiserver',
      '/CN=kube-apiserver',
      [
        'extendedKeyUsage = serverAuth',
        'subjectAltName = IP:127.0.0.1, DNS:localhost, IP:10.96.0.1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc',
      ],
      ca,
    ),
    issue(dir, 'admin', '/O=system:masters/CN=gitops-admin', ['extendedKeyUsage = clientAuth'], ca),
    issue(dir, 'controller-manager', '/CN=system:kube-controller-manager', ['extendedKeyUsage = clientAuth'], ca),
  ]);
  await saPair;
  return {
    caCert: ca.cert,
    caKey: ca.key,
    serverCert: server.cert,
    serverKey: server.key,
    adminCert: admin.cert,
    adminKey: admin.key,
    controllerManagerCert: cm.cert,
    controllerManagerKey: cm.key,
    serviceAccountKey,
    serviceAccountPub,
  };
}
