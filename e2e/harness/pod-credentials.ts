/**
 * Credentials for running a program "as in a pod" without a kubelet: a ServiceAccount token from
 * the TokenRequest API plus the cluster CA and namespace, written where in-cluster configuration
 * looks for them (`<prefix>/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}`),
 * and the `KUBERNETES_SERVICE_HOST/PORT` a pod would get.
 */
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where a pod finds its ServiceAccount credentials, relative to the filesystem root. */
export const SERVICE_ACCOUNT_PATH = 'var/run/secrets/kubernetes.io/serviceaccount';

export interface PodCredentials {
  /** Pass to `KubeConfig.loadFromCluster(pathPrefix)`; the files are under it at SERVICE_ACCOUNT_PATH. */
  pathPrefix: string;
  /** The folder holding token, ca.crt and namespace (what a container would mount). */
  serviceAccountDir: string;
  token: string;
  /** `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT` for the child process's environment. */
  env: { KUBERNETES_SERVICE_HOST: string; KUBERNETES_SERVICE_PORT: string };
  /** Deletes the folder. */
  remove(): Promise<void>;
}

/** A token for `namespace/serviceAccount` from the TokenRequest API (the ServiceAccount must exist). */
export async function createServiceAccountToken(
  kc: KubeConfig,
  namespace: string,
  serviceAccount: string,
  expirationSeconds = 3600,
): Promise<string> {
  const res = await kc.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace,
    body: { spec: { audiences: [], expirationSeconds } },
  });
  const token = res.status?.token;
  if (!token) throw new Error(`ServiceAccount/${namespace}/${serviceAccount}: TokenRequest returned no token`);
  return token;
}

/** The PEM CA of `kc`'s current cluster. */
export async function clusterCaPem(kc: KubeConfig): Promise<string> {
  const cluster = kc.getCurrentCluster();
  if (cluster?.caData) return Buffer.from(cluster.caData, 'base64').toString('utf8');
  if (cluster?.caFile) return readFile(cluster.caFile, 'utf8');
  throw new Error(`cluster ${cluster?.name ?? '(none)'}: kubeconfig names no CA`);
}

/**
 * Makes a token for `namespace/serviceAccount` and writes the pod-like folder; `dir` defaults to a
 * new temporary folder.
 */
export async function writePodCredentials(
  kc: KubeConfig,
  opts: { namespace: string; serviceAccount: string; dir?: string; expirationSeconds?: number },
): Promise<PodCredentials> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const url = new URL(cluster.server);
  const [token, ca] = await Promise.all([
    createServiceAccountToken(kc, opts.namespace, opts.serviceAccount, opts.expirationSeconds),
    clusterCaPem(kc),
  ]);
  const pathPrefix = opts.dir ?? (await mkdtemp(join(tmpdir(), 'gitops-pod-')));
  const serviceAccountDir = join(pathPrefix, SERVICE_ACCOUNT_PATH);
  await mkdir(serviceAccountDir, { recursive: true });
  await Promise.all([
    writeFile(join(serviceAccountDir, 'token'), token, { mode: 0o600 }),
    writeFile(join(serviceAccountDir, 'ca.crt'), ca),
    writeFile(join(serviceAccountDir, 'namespace'), opts.namespace),
  ]);
  return {
    // loadFromCluster concatenates the prefix with an absolute path.
    pathPrefix,
    serviceAccountDir,
    token,
    env: { KUBERNETES_SERVICE_HOST: url.hostname, KUBERNETES_SERVICE_PORT: url.port || '443' },
    remove: () => rm(pathPrefix, { recursive: true, force: true }),
  };
}
