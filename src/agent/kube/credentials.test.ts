import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  defaultCredentials,
  inClusterCredentials,
  kubeconfigCredentials,
  kubeconfigPaths,
  needsPlugin,
  readKubeconfig,
} from './credentials.js';

let dir: string;
const b64 = (s: string): string => Buffer.from(s).toString('base64');

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'gitops-creds-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const p = path.join(dir, name);
  await mkdir(path.dirname(p), { recursive: true });
  await writeFile(p, text);
  return p;
}

describe('kubeconfig files', () => {
  it('reads client certificate data, a CA file relative to the kubeconfig, the namespace and tls-server-name', async () => {
    await file('certs/ca.crt', 'CA-PEM');
    const kc = await file(
      'admin.kubeconfig',
      `
apiVersion: v1
kind: Config
current-context: admin
clusters:
- name: local
  cluster: { server: "https://127.0.0.1:6443", certificate-authority: certs/ca.crt, tls-server-name: kubernetes }
users:
- name: admin
  user: { client-certificate-data: ${b64('CERT-PEM')}, client-key-data: ${b64('KEY-PEM')} }
contexts:
- name: admin
  context: { cluster: local, user: admin, namespace: team-a }
`,
    );
    const creds = await kubeconfigCredentials(readKubeconfig([kc]));
    expect(creds.server.href).toBe('https://127.0.0.1:6443/');
    expect(String(creds.tls.ca)).toBe('CA-PEM');
    expect(String(creds.tls.cert)).toBe('CERT-PEM');
    expect(String(creds.tls.key)).toBe('KEY-PEM');
    expect(creds.tls.servername).toBe('kubernetes');
    expect(creds.tls.rejectUnauthorized).toBeUndefined();
    expect(creds.namespace).toBe('team-a');
    expect(await creds.authHeaders()).toEqual({});
  });

  it('merges KUBECONFIG as kubectl does: the first file defining a name wins, the first current-context is used, missing files are skipped', async () => {
    const first = await file(
      'merge/first',
      `
clusters:
- name: shared
  cluster: { server: "https://first:6443", insecure-skip-tls-verify: true }
users:
- name: me
  user: { token: first-token }
`,
    );
    const second = await file(
      'merge/second',
      `
current-context: work
clusters:
- name: shared
  cluster: { server: "https://second:6443" }
users:
- name: me
  user: { token: second-token }
contexts:
- name: work
  context: { cluster: shared, user: me }
`,
    );
    const paths = kubeconfigPaths(undefined, {
      KUBECONFIG: [first, path.join(dir, 'merge/missing'), second].join(path.delimiter),
    });
    const creds = await kubeconfigCredentials(readKubeconfig(paths));
    expect(creds.server.host).toBe('first:6443');
    expect(creds.tls.rejectUnauthorized).toBe(false);
    expect(await creds.authHeaders()).toEqual({ Authorization: 'Bearer first-token' });
  });

  it('re-reads a tokenFile when asked to refresh (after a 401), so a rotated token is used', async () => {
    const token = await file('rotate/token', 'old-token\n');
    const kc = await file(
      'rotate/kubeconfig',
      `
current-context: c
clusters: [{ name: k, cluster: { server: "https://k:443" } }]
users: [{ name: u, user: { tokenFile: token } }]
contexts: [{ name: c, context: { cluster: k, user: u } }]
`,
    );
    const creds = await kubeconfigCredentials(readKubeconfig([kc]));
    expect(await creds.authHeaders()).toEqual({ Authorization: 'Bearer old-token' });
    await writeFile(token, 'new-token\n');
    expect(await creds.authHeaders()).toEqual({ Authorization: 'Bearer old-token' });
    expect(await creds.authHeaders(true)).toEqual({ Authorization: 'Bearer new-token' });
  });

  it('names the file and the context in what is wrong, never a credential', async () => {
    const kc = await file(
      'bad/kubeconfig',
      `
current-context: nowhere
users: [{ name: u, user: { token: secret-value } }]
`,
    );
    expect(() => readKubeconfig([kc])).toThrow(`${kc}: context "nowhere" is not defined`);
    expect(() => readKubeconfig([path.join(dir, 'bad/none')])).toThrow(/bad\/none: cannot read \(ENOENT\)/);
    try {
      readKubeconfig([kc]);
    } catch (err) {
      expect((err as Error).message).not.toContain('secret-value');
    }
  });

  it('says where a kubeconfig is not valid YAML without quoting the line, which may hold a token', async () => {
    const kc = await file('bad/broken-yaml', 'users:\n- name: u\n  user:\n    token: secret-value: x\n');
    let message = '';
    try {
      readKubeconfig([kc]);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain(`${kc}:4:12: not valid YAML`);
    expect(message).not.toContain('secret-value');
  });

  it('runs an exec plugin through @kubernetes/client-node and sends the token it prints', async () => {
    const script = await file(
      'exec/plugin.mjs',
      `process.stdout.write(JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: 'from-plugin' } }));\n`,
    );
    const kc = await file(
      'exec/kubeconfig',
      `
current-context: c
clusters: [{ name: k, cluster: { server: "https://k:443" } }]
users:
- name: u
  user:
    exec: { apiVersion: client.authentication.k8s.io/v1, command: ${JSON.stringify(process.execPath)}, args: [${JSON.stringify(script)}], interactiveMode: Never }
contexts: [{ name: c, context: { cluster: k, user: u, namespace: ns1 } }]
`,
    );
    const config = readKubeconfig([kc]);
    expect(needsPlugin(config)).toBe(true);
    const creds = await kubeconfigCredentials(config);
    expect(creds.server.host).toBe('k');
    expect(creds.namespace).toBe('ns1');
    expect(await creds.authHeaders()).toEqual({ Authorization: 'Bearer from-plugin' });
  });
});

describe('in-cluster credentials', () => {
  it('builds the server URL from KUBERNETES_SERVICE_HOST/PORT (IPv6 in brackets), reads ca.crt and namespace, and re-reads a rotated token', async () => {
    const sa = path.join(dir, 'pod/var/run/secrets/kubernetes.io/serviceaccount');
    await file('pod/var/run/secrets/kubernetes.io/serviceaccount/ca.crt', 'CLUSTER-CA');
    await file('pod/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'gitops\n');
    const token = await file('pod/var/run/secrets/kubernetes.io/serviceaccount/token', 'bound-1');
    const creds = inClusterCredentials({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' }, sa);
    expect(creds.server.href).toBe('https://[fd00::1]:6443/');
    expect(String(creds.tls.ca)).toBe('CLUSTER-CA');
    expect(creds.namespace).toBe('gitops');
    expect(await creds.authHeaders()).toEqual({ Authorization: 'Bearer bound-1' });
    await writeFile(token, 'bound-2');
    expect(await creds.authHeaders(true)).toEqual({ Authorization: 'Bearer bound-2' });
  });

  it('is the fallback of the default order when no kubeconfig exists and KUBERNETES_SERVICE_HOST is set', async () => {
    const sa = path.join(dir, 'pod/var/run/secrets/kubernetes.io/serviceaccount');
    const creds = await defaultCredentials(
      undefined,
      { HOME: path.join(dir, 'no-home'), KUBERNETES_SERVICE_HOST: '10.0.0.1' },
      sa,
    );
    expect(creds.server.href).toBe('https://10.0.0.1/');
    await expect(defaultCredentials(undefined, { HOME: path.join(dir, 'no-home') }, sa)).rejects.toThrow(
      'no cluster configured',
    );
  });
});
