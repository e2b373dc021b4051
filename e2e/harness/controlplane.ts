/**
 * A real Kubernetes control plane for tests and for `npm run cluster`: etcd, kube-apiserver and
 * kube-controller-manager (the envtest arrangement plus the controllers), started from the binaries
 * that scripts/build-controlplane.sh builds and caches (or `KUBEBUILDER_ASSETS`).
 *
 * Everything lives in one temporary folder owned by a {@link ProcessGroup}: certificates, etcd data,
 * kubeconfigs, the audit policy and log, and one log file per process. Ports come from the OS.
 * Start order is etcd → apiserver (until `/readyz`) → controller-manager (until the `default`
 * ServiceAccount of `default` appears, proof its controllers work); stop is the reverse, waiting
 * for each, because an apiserver whose etcd is gone retries for ever.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify as toYaml } from 'yaml';
import { generateControlPlaneCerts } from './certs.js';
import { ProcessGroup, type ManagedProcess } from './processes.js';

/** The user name of the admin client certificate (group `system:masters`). */
export const ADMIN_USERNAME = 'gitops-admin';

/** A running control plane; see the module comment. */
export interface ControlPlane {
  /** Admin kubeconfig (certificates embedded, so it can be copied anywhere). */
  readonly kubeconfigPath: string;
  /** `https://127.0.0.1:<port>` */
  readonly server: string;
  readonly caPem: string;
  readonly adminCertPem: string;
  readonly adminKeyPem: string;
  /** JSON-lines audit log of write requests (Metadata level, ResponseComplete stage). */
  readonly auditLogPath: string;
  /** The temporary folder; deleted by `stop()`. */
  readonly dir: string;
  /** Milliseconds from the call to `startControlPlane` until each stage was ready. */
  readonly timings: { certsMs: number; etcdMs: number; apiserverMs: number; controllersMs: number };
  /** Settles with the name of the first process that exited while the control plane was up. */
  readonly unexpectedExit: Promise<string>;
  /** A fresh client configuration for the admin user. */
  kubeConfig(): KubeConfig;
  /**
   * Stops kube-apiserver (SIGTERM, as a rolling control-plane upgrade does) and starts it again on
   * the same port with the same flags; resolves once `/readyz` answers 200. etcd and the
   * controller-manager keep running; `unexpectedExit` ignores the planned exit.
   */
  restartApiServer(): Promise<void>;
  /** Stops controller-manager, apiserver and etcd in that order and deletes `dir`. */
  stop(): Promise<void>;
}

export interface StartControlPlaneOptions {
  /** Folder with etcd, kube-apiserver and kube-controller-manager; built/found when absent. */
  binDir?: string;
  /** Where the audit log goes (kept after stop); `<dir>/audit.log` by default. */
  auditLog?: string;
  /** Progress lines (build steps, readiness); silent by default. */
  log?: (line: string) => void;
  /** Install SIGINT/SIGTERM handlers that kill the processes (default true; see ProcessGroup). */
  handleSignals?: boolean;
}

const ETCD_TIMEOUT_MS = 30_000;
const APISERVER_TIMEOUT_MS = 90_000;
const CONTROLLERS_TIMEOUT_MS = 90_000;
const AUDIT_POLICY = {
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  omitStages: ['RequestReceived'],
  rules: [{ level: 'Metadata', verbs: ['create', 'update', 'patch', 'delete', 'deletecollection'] }, { level: 'None' }],
};

/** The repository root, found from this module's location (works from e2e/ and dist/e2e/). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'scripts', 'build-controlplane.sh'))) return dir;
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error(`${fileURLToPath(import.meta.url)}: cannot find scripts/build-controlplane.sh above this file`);
    dir = parent;
  }
}

/**
 * Returns the folder holding the three binaries, running scripts/build-controlplane.sh (which
 * honours `KUBEBUILDER_ASSETS` and reuses its cache; a cold build takes minutes). The script's
 * progress lines go to `log`.
 */
export async function ensureControlPlaneBinaries(log: (line: string) => void = () => {}): Promise<string> {
  const script = join(repoRoot(), 'scripts', 'build-controlplane.sh');
  const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderrTail: string[] = [];
  let partial = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      log(line);
      stderrTail = [...stderrTail, line].slice(-20);
    }
  });
  // A cold build spends minutes inside one `go build`: say it is alive rather than go silent.
  const t0 = Date.now();
  let lastOutput = Date.now();
  child.stderr.on('data', () => (lastOutput = Date.now()));
  const heartbeat = setInterval(() => {
    if (Date.now() - lastOutput < 30_000) return;
    lastOutput = Date.now();
    log(`[controlplane +${Math.round((Date.now() - t0) / 1000)}s] still building...`);
  }, 5_000);
  const code = await new Promise<number | null>((res) => child.once('close', res)).finally(() =>
    clearInterval(heartbeat),
  );
  if (code !== 0) {
    throw new Error(`${script}: exited with ${String(code)}\n${[...stderrTail, partial].join('\n').trim()}`);
  }
  const dir = stdout.trim().split('\n').pop() ?? '';
  if (!dir) throw new Error(`${script}: printed no binary folder`);
  return dir;
}

/** `n` distinct free loopback ports, held open together so the OS hands out different ones. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((res, rej) => {
          const s = net.createServer();
          s.once('error', rej);
          s.listen(0, '127.0.0.1', () => res(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((res) => s.close(() => res()))));
  return ports;
}

/** Renders a kubeconfig with everything embedded. */
export function renderKubeconfig(params: {
  server: string;
  caPem: string;
  certPem: string;
  keyPem: string;
  user: string;
}): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'gitops-test', cluster: { server: params.server, 'certificate-authority-data': b64(params.caPem) } },
    ],
    users: [
      {
        name: params.user,
        user: { 'client-certificate-data': b64(params.certPem), 'client-key-data': b64(params.keyPem) },
      },
    ],
    contexts: [{ name: 'gitops-test', context: { cluster: 'gitops-test', user: params.user } }],
    'current-context': 'gitops-test',
  });
}

type Tls = { ca: string; cert: string; key: string };

/** Status code of a GET, or 0 when the connection fails. */
function statusOf(url: string, tls?: Tls): Promise<number> {
  return new Promise((res) => {
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.get(url, { ...(tls ?? {}), agent: false, timeout: 2000 }, (r) => {
      r.resume();
      res(r.statusCode ?? 0);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => res(0));
  });
}

/** Polls `ok` until true; fails with the tail of `proc`'s log if it exits first or time runs out. */
async function waitReady(
  proc: ManagedProcess,
  what: string,
  ok: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await ok()) return;
    const exit = proc.exit();
    if (exit) {
      throw new Error(
        `${proc.name}: exited (code ${String(exit.code)}, signal ${String(exit.signal)}) before ${what}; last lines of ${proc.logPath}:\n${await proc.logTail()}`,
      );
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${proc.name}: not ${what} after ${timeoutMs} ms; last lines of ${proc.logPath}:\n${await proc.logTail()}`,
      );
    }
    await sleep(intervalMs);
  }
}

/** Starts etcd, kube-apiserver and kube-controller-manager; resolves once the controllers work. */
export async function startControlPlane(opts: StartControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? (() => {});
  const binDir = opts.binDir ?? (await ensureControlPlaneBinaries(log));
  for (const b of ['etcd', 'kube-apiserver', 'kube-controller-manager']) {
    if (!existsSync(join(binDir, b)))
      throw new Error(`${join(binDir, b)}: missing; run scripts/build-controlplane.sh or fix KUBEBUILDER_ASSETS`);
  }
  const t0 = Date.now();
  const group = await ProcessGroup.create({ prefix: 'gitops-cp-', handleSignals: opts.handleSignals ?? true });
  const dir = group.dir;
  try {
    const [certs, [etcdPort, peerPort, apiPort]] = await Promise.all([generateControlPlaneCerts(dir), freePorts(3)]);
    const certsMs = Date.now() - t0;
    const [caPem, adminCertPem, adminKeyPem, cmCertPem, cmKeyPem] = await Promise.all(
      [certs.caCert, certs.adminCert, certs.adminKey, certs.controllerManagerCert, certs.controllerManagerKey].map(
        (p) => readFile(p, 'utf8'),
      ),
    );
    const server = `https://127.0.0.1:${apiPort}`;
    const kubeconfigPath = join(dir, 'admin.kubeconfig');
    const cmKubeconfig = join(dir, 'controller-manager.kubeconfig');
    const auditPolicy = join(dir, 'audit-policy.yaml');
    const auditLogPath = resolve(opts.auditLog ?? join(dir, 'audit.log'));
    await Promise.all([
      writeFile(
        kubeconfigPath,
        renderKubeconfig({ server, caPem, certPem: adminCertPem, keyPem: adminKeyPem, user: ADMIN_USERNAME }),
        { mode: 0o600 },
      ),
      writeFile(
        cmKubeconfig,
        renderKubeconfig({
          server,
          caPem,
          certPem: cmCertPem,
          keyPem: cmKeyPem,
          user: 'system:kube-controller-manager',
        }),
        { mode: 0o600 },
      ),
      writeFile(auditPolicy, toYaml(AUDIT_POLICY)),
    ]);

    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const etcd = group.start('etcd', join(binDir, 'etcd'), [
      '--name',
      'default',
      '--data-dir',
      join(dir, 'etcd'),
      '--listen-client-urls',
      etcdUrl,
      '--advertise-client-urls',
      etcdUrl,
      '--listen-peer-urls',
      peerUrl,
      '--initial-advertise-peer-urls',
      peerUrl,
      '--initial-cluster',
      `default=${peerUrl}`,
      '--unsafe-no-fsync',
      '--log-level',
      'warn',
    ]);
    await waitReady(etcd, 'healthy', async () => (await statusOf(`${etcdUrl}/health`)) === 200, ETCD_TIMEOUT_MS, 50);
    const etcdMs = Date.now() - t0;
    log(`etcd healthy on ${etcdUrl} after ${etcdMs} ms`);

    const apiserverArgs = [
      '--etcd-servers',
      etcdUrl,
      '--bind-address',
      '127.0.0.1',
      '--advertise-address',
      '127.0.0.1',
      '--secure-port',
      String(apiPort),
      '--cert-dir',
      join(dir, 'apiserver-certs'),
      '--tls-cert-file',
      certs.serverCert,
      '--tls-private-key-file',
      certs.serverKey,
      '--client-ca-file',
      certs.caCert,
      '--authorization-mode',
      'RBAC',
      '--service-account-issuer',
      'https://kubernetes.default.svc',
      '--service-account-key-file',
      certs.serviceAccountPub,
      '--service-account-signing-key-file',
      certs.serviceAccountKey,
      '--service-cluster-ip-range',
      '10.96.0.0/16',
      '--audit-policy-file',
      auditPolicy,
      '--audit-log-path',
      auditLogPath,
      // No rotation during a run: the log is read as one file.
      '--audit-log-maxsize',
      '4096',
    ];
    let apiserver = group.start('kube-apiserver', join(binDir, 'kube-apiserver'), apiserverArgs);
    const tls: Tls = { ca: caPem, cert: adminCertPem, key: adminKeyPem };
    await waitReady(
      apiserver,
      'ready (/readyz)',
      async () => (await statusOf(`${server}/readyz`, tls)) === 200,
      APISERVER_TIMEOUT_MS,
      100,
    );
    const apiserverMs = Date.now() - t0;
    log(`kube-apiserver ready on ${server} after ${apiserverMs} ms`);

    const controllerManager = group.start('kube-controller-manager', join(binDir, 'kube-controller-manager'), [
      '--kubeconfig',
      cmKubeconfig,
      '--use-service-account-credentials',
      '--service-account-private-key-file',
      certs.serviceAccountKey,
      '--root-ca-file',
      certs.caCert,
      '--leader-elect=false',
      '--secure-port=0',
      // Namespace deletion and garbage collection make many calls; the default 20 qps slows tests.
      '--kube-api-qps',
      '100',
      '--kube-api-burst',
      '200',
    ]);
    await waitReady(
      controllerManager,
      'working (default ServiceAccount in namespace default)',
      async () => (await statusOf(`${server}/api/v1/namespaces/default/serviceaccounts/default`, tls)) === 200,
      CONTROLLERS_TIMEOUT_MS,
      100,
    );
    const controllersMs = Date.now() - t0;
    log(`kube-controller-manager working after ${controllersMs} ms`);

    let stopping = false;
    // Settles with the first exit that was neither a stop nor a planned apiserver restart.
    let reportExit: (name: string) => void = () => {};
    const unexpectedExit = new Promise<string>((res) => (reportExit = res));
    const planned = new Set<ManagedProcess>();
    const watchExit = (p: ManagedProcess): void => {
      void p.exited.then(() => {
        if (!stopping && !planned.has(p)) reportExit(p.name);
      });
    };
    for (const p of [etcd, apiserver, controllerManager]) watchExit(p);
    return {
      kubeconfigPath,
      server,
      caPem,
      adminCertPem,
      adminKeyPem,
      auditLogPath,
      dir,
      timings: { certsMs, etcdMs, apiserverMs, controllersMs },
      unexpectedExit,
      kubeConfig: () => {
        const kc = new KubeConfig();
        kc.loadFromString(
          renderKubeconfig({ server, caPem, certPem: adminCertPem, keyPem: adminKeyPem, user: ADMIN_USERNAME }),
        );
        return kc;
      },
      restartApiServer: async () => {
        planned.add(apiserver);
        await group.stop(apiserver, 10_000);
        apiserver = group.start('kube-apiserver', join(binDir, 'kube-apiserver'), apiserverArgs);
        watchExit(apiserver);
        await waitReady(
          apiserver,
          'ready again (/readyz)',
          async () => (await statusOf(`${server}/readyz`, tls)) === 200,
          APISERVER_TIMEOUT_MS,
          100,
        );
      },
      stop: async () => {
        stopping = true;
        await group.dispose();
      },
    };
  } catch (err) {
    await group.dispose(1000);
    throw err;
  }
}
