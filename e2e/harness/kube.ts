/**
 * What integration tests use to reach the control plane that e2e/harness/global-setup.ts started
 * once for the jest run. Jest workers cannot share objects with global setup, only environment
 * variables, so the kubeconfig, audit log and folder are published under TEST_ENV's names.
 * Also: a fresh namespace per test, and raw requests for what @kubernetes/client-node 1.4 cannot
 * send (an RFC 6902 JSON patch), over one keep-alive connection.
 */
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import { waitFor } from './wait.js';

export { waitFor } from './wait.js';

/** Environment variables through which global setup publishes the control plane. */
export const TEST_ENV = {
  kubeconfig: 'GITOPS_TEST_KUBECONFIG',
  auditLog: 'GITOPS_TEST_AUDIT_LOG',
  dir: 'GITOPS_TEST_CP_DIR',
} as const;

/** Label on every namespace made by {@link freshNamespace}. */
export const TEST_NAMESPACE_LABEL = 'gitops.test/namespace';

function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set: run integration tests through jest's integration project (its global setup starts the control plane)`,
    );
  }
  return value;
}

/** An admin client configuration for the test control plane. */
export function testKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(requireEnv(TEST_ENV.kubeconfig));
  return kc;
}

/** Path of the control plane's audit log. */
export function testAuditLogPath(): string {
  return requireEnv(TEST_ENV.auditLog);
}

export interface TestNamespace {
  name: string;
  /** Deletes the namespace (the namespace controller removes its contents in the background). */
  delete(): Promise<void>;
}

/** Creates a namespace `<prefix>-<random>` (valid DNS label) for one test. */
export async function freshNamespace(prefix: string, kc: KubeConfig = testKubeConfig()): Promise<TestNamespace> {
  const base =
    prefix
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 50) || 'test';
  const name = `${base}-${randomBytes(4).toString('hex')}`;
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name, labels: { [TEST_NAMESPACE_LABEL]: 'true' } } } });
  return {
    name,
    delete: async () => {
      try {
        await core.deleteNamespace({ name });
      } catch (err) {
        if ((err as { code?: number }).code !== 404) throw err;
      }
    },
  };
}

/** Resolves once `GET path` answers 404 (for example after a delete). */
export async function waitForGone(kc: KubeConfig, path: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(async () => (await kubeRequest(kc, 'GET', path)).status === 404, timeoutMs, `${path} to be gone`);
}

export interface KubeResponse {
  status: number;
  /** Parsed JSON body (a Status object for errors), or undefined when empty. */
  body: unknown;
}

const agents = new WeakMap<KubeConfig, https.Agent>();

async function agentFor(kc: KubeConfig): Promise<https.Agent> {
  let agent = agents.get(kc);
  if (!agent) {
    const opts: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(opts);
    agent = new https.Agent({ keepAlive: true, ca: opts.ca, cert: opts.cert, key: opts.key });
    agents.set(kc, agent);
  }
  return agent;
}

/**
 * One raw request to the API server with `kc`'s credentials, over a keep-alive connection.
 * Non-2xx answers are returned, not thrown, so tests can assert on them.
 */
export async function kubeRequest(
  kc: KubeConfig,
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
): Promise<KubeResponse> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const url = new URL(path, cluster.server);
  // applyToHTTPSOptions also sets a fresh agent per call; keep only its headers (a bearer token).
  const auth: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(auth);
  const opts: https.RequestOptions = {
    method,
    agent: await agentFor(kc),
    headers: { ...auth.headers, accept: 'application/json' },
  };
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  if (payload)
    opts.headers = { ...opts.headers, 'content-type': contentType, 'content-length': String(payload.length) };
  return new Promise<KubeResponse>((resolve, reject) => {
    const req = https.request(url, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          parsed = text;
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** An RFC 6902 operation. */
export type JsonPatchOp =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'move' | 'copy'; from: string; path: string };

/** Sends an RFC 6902 JSON patch (`application/json-patch+json`) to the object at `path`. */
export function jsonPatch(
  kc: KubeConfig,
  path: string,
  ops: JsonPatchOp[],
  fieldManager = 'gitops-test',
): Promise<KubeResponse> {
  const sep = path.includes('?') ? '&' : '?';
  return kubeRequest(
    kc,
    'PATCH',
    `${path}${sep}fieldManager=${encodeURIComponent(fieldManager)}`,
    ops,
    'application/json-patch+json',
  );
}

/**
 * `spec.replicas` of Deployment `namespace/name` (default `nginx`, as the e2e manifests name it), or undefined while
 * it does not exist.
 */
export async function deploymentReplicas(
  kc: KubeConfig,
  namespace: string,
  name = 'nginx',
): Promise<number | undefined> {
  const res = await kubeRequest(kc, 'GET', `/apis/apps/v1/namespaces/${namespace}/deployments/${name}`);
  return res.status === 200 ? (res.body as { spec: { replicas: number } }).spec.replicas : undefined;
}
