/**
 * The agent as users run it: the Deployment of manifests/agent (through the test overlay in
 * e2e/node/overlay, built with the real kustomize), from the product image that the Dockerfile
 * describes (assembled by e2e/harness/product-image.ts and imported into the node's containerd),
 * on the real node of jest's `node` project. Checked: two pods Running and Ready through the
 * kubelet's probes on /healthz and /readyz, as uid 1000 under the namespace's Pod Security
 * `restricted`, talking to the API server with the projected ServiceAccount token; the elected
 * replica applies a commit (whose nginx pods then run) and reverts a manual edit; deleting the
 * leader pod hands over to the other replica, and a manual edit is reverted again. Last, the server
 * moves into a pod from manifests/server too (its registry on a hostPath PersistentVolume, a TLS
 * certificate for its Service name), and the agent pods, now with manifests/agent's own server URL,
 * apply the next commit through it: the whole product in pods.
 *
 * The Git server and, until the last step, gitops-server come from e2e/harness/stack.ts (its agent
 * process is stopped: the pods are the agent). The pods reach the host's loopback-only services
 * (API server, gitops-server, Git) through TCP forwarders on the node's IP (e2e/harness/forward.ts;
 * why: the overlay's header); the server pod they reach by its pod IP under the Service's name
 * (host aliases: no kube-proxy, no cluster DNS).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { describeWrite, syncAuditLog, writeRequests } from '../harness/audit.js';
import { repoRoot } from '../harness/controlplane.js';
import { forwardTcp, type Forwarder } from '../harness/forward.js';
import { useStack } from '../harness/jest-stack.js';
import { deploymentReplicas, jsonPatch, kubeRequest, testAuditLogPath, waitFor } from '../harness/kube.js';
import { defaultRouteDevice, firstAddress, testNode } from '../harness/node.js';
import { listPods, waitForReadyPods, type PodLike } from '../harness/pods.js';
import { PRODUCT_IMAGE, writeProductImage } from '../harness/product-image.js';
import { nginxDeployment, type Stack } from '../harness/stack.js';
import type { KubeConfig } from '@kubernetes/client-node';

const run = promisify(execFile);
const ROOT = repoRoot();
const OVERLAY = path.join(ROOT, 'e2e', 'node', 'overlay');
/** Names of manifests/agent. */
const NAMESPACE = 'gitops-agent';
const SELECTOR = 'app.kubernetes.io/name=gitops-agent';
const SERVICE_ACCOUNT = `system:serviceaccount:${NAMESPACE}:gitops-agent`;
const PODS_TIMEOUT_MS = 120_000;
/** Names of manifests/server. */
const SERVER_NAMESPACE = 'gitops-server';
const SERVER_SELECTOR = 'app.kubernetes.io/name=gitops-server';
const SERVER_SERVICE_NAME = `gitops-server.${SERVER_NAMESPACE}.svc`;

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
}

function objectPath(obj: KubeObject): string {
  const [group, version] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion];
  const ns = obj.metadata.namespace ? `/namespaces/${obj.metadata.namespace}` : '';
  return `${group ? `/apis/${group}/${version}` : `/api/${version}`}${ns}/${obj.kind.toLowerCase()}s/${obj.metadata.name}`;
}

/** The node's IP as e2e/harness/node.ts picks it (the default route's device). */
async function nodeIp(): Promise<string> {
  const device = defaultRouteDevice((await run('ip', ['-o', '-4', 'route'])).stdout);
  const ip = device ? firstAddress((await run('ip', ['-o', '-4', 'addr', 'show', 'dev', device])).stdout) : undefined;
  if (!ip)
    throw new Error("no IPv4 address on the default route's device: the pods have nothing to reach the host through");
  return ip;
}

/** The run's own kustomization over e2e/node/overlay: what only this run knows (see the overlay's header). */
function runKustomization(
  dir: string,
  values: { serverUrl?: string; apiPort: number; aliases: Array<{ ip: string; hostnames: string[] }> },
): string {
  const serverUrl = values.serverUrl
    ? `  - name: gitops-agent-config
    namespace: ${NAMESPACE}
    behavior: merge
    literals: [server-url=${values.serverUrl}]
`
    : '';
  const aliases = values.aliases.map((a) => `{ip: ${a.ip}, hostnames: [${a.hostnames.join(', ')}]}`).join(', ');
  return `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ${path.relative(dir, OVERLAY)}
secretGenerator:
  - name: gitops-agent-token
    namespace: ${NAMESPACE}
    files: [token]
configMapGenerator:
  - name: gitops-agent-ca
    namespace: ${NAMESPACE}
    files: [ca.crt]
${serverUrl}patches:
  - target: {kind: Deployment, name: gitops-agent}
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: KUBERNETES_SERVICE_PORT, value: "${values.apiPort}"}
      - op: add
        path: /spec/template/spec/hostAliases
        value: [${aliases}]
`;
}

/**
 * The run's kustomization over manifests/server, as a user's overlay would set it: the image, the
 * Git host's URL, the TLS Secret, the Git token Secret, and a short poll interval (this test sends
 * no webhooks). The state PVC binds to a PersistentVolume the test makes (no provisioner here).
 */
function serverKustomization(dir: string, gitBaseUrl: string): string {
  return `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ${path.relative(dir, path.join(ROOT, 'manifests', 'server'))}
images:
  - {name: gitops, newName: localhost/gitops, newTag: e2e}
configMapGenerator:
  - name: gitops-server-config
    namespace: ${SERVER_NAMESPACE}
    behavior: merge
    literals: [git-base-url=${gitBaseUrl}]
secretGenerator:
  - name: gitops-server-tls
    namespace: ${SERVER_NAMESPACE}
    type: kubernetes.io/tls
    files: [tls.crt, tls.key]
  - name: gitops-server-git-token
    namespace: ${SERVER_NAMESPACE}
    files: [token]
patches:
  - target: {kind: Deployment, name: gitops-server}
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --poll-interval=2s
`;
}

/** A CA and a server certificate for `names`, made with the openssl CLI into `dir` (ca.crt, tls.crt, tls.key). */
async function makeServerCert(dir: string, names: string[]): Promise<void> {
  const o = (...args: string[]): Promise<unknown> => run('openssl', args, { cwd: dir });
  await o(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=gitops-e2e-ca',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  );
  await o(
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-subj',
    `/CN=${names[0]}`,
    '-keyout',
    'tls.key',
    '-out',
    'tls.csr',
  );
  await writeFile(path.join(dir, 'ext.cnf'), `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\n`);
  await o(
    'x509',
    '-req',
    '-in',
    'tls.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    'ext.cnf',
    '-out',
    'tls.crt',
  );
}

let kustomizeBin = '';

/** `kustomize build DIR`, server-side applied object by object (kustomize puts Namespaces first). */
async function applyKustomization(buildDir: string): Promise<void> {
  kustomizeBin ||= (
    await run('bash', [path.join(ROOT, 'scripts', 'build-helm.sh'), 'kustomize'], { maxBuffer: 1 << 24 })
  ).stdout
    .trim()
    .split('\n')
    .pop()!;
  const { stdout } = await run(kustomizeBin, ['build', buildDir], { maxBuffer: 1 << 24 });
  for (const obj of parseAllDocuments(stdout).map((d) => d.toJS() as KubeObject)) await applyObject(obj);
}

async function applyObject(obj: KubeObject): Promise<void> {
  const res = await kubeRequest(
    kc,
    'PATCH',
    `${objectPath(obj)}?fieldManager=kubectl&force=true`,
    obj,
    'application/apply-patch+yaml',
  );
  if (res.status >= 300)
    throw new Error(`${obj.kind}/${obj.metadata.name}: apply failed with ${res.status}: ${JSON.stringify(res.body)}`);
  applied.push(obj);
}

/** The host's processes of the agent's container (its command line as the Deployment gives it), with their uid. */
async function agentProcesses(): Promise<Array<{ pid: string; uid: string }>> {
  const found: Array<{ pid: string; uid: string }> = [];
  for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.includes('/usr/local/bin/gitops-agent') || !cmdline.includes('--state-dir=/var/lib/gitops-agent'))
      continue;
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    if (uid) found.push({ pid, uid });
  }
  return found;
}

/**
 * The pod whose replica holds the agent's Lease (an identity is the pod's name, `_` and a suffix
 * kept in the state folder: src/agent/identity.ts), or undefined while nobody does.
 */
async function leaderPod(kc: KubeConfig): Promise<string | undefined> {
  const res = await kubeRequest(kc, 'GET', `/apis/coordination.k8s.io/v1/namespaces/${NAMESPACE}/leases`);
  const leases = (res.body as { items?: Array<{ spec?: { holderIdentity?: string } }> }).items ?? [];
  const holder = leases.map((l) => l.spec?.holderIdentity).find((h) => h);
  if (!holder) return undefined;
  const pods = await listPods(kc, NAMESPACE, SELECTOR);
  return (
    pods.map((p) => p.metadata.name).find((name) => holder === name || holder.startsWith(`${name}_`)) ??
    `(no pod) ${holder}`
  );
}

type LogLine = { msg?: string; changes?: string[] };

/** Waits until the pod's log (through the API server and the kubelet) has a JSON line matching `match`. */
async function expectLogged(
  kc: KubeConfig,
  pod: string,
  what: string,
  match: (line: LogLine) => boolean,
): Promise<void> {
  await waitFor(
    async () => {
      const res = await kubeRequest(kc, 'GET', `/api/v1/namespaces/${NAMESPACE}/pods/${pod}/log`);
      const text = typeof res.body === 'string' ? res.body : JSON.stringify(res.body);
      return text.split('\n').some((line) => {
        try {
          return match(JSON.parse(line) as LogLine);
        } catch {
          return false;
        }
      });
    },
    15_000,
    `${what} in the log of pod ${pod}`,
    200,
  );
}

const msgIs =
  (msg: string) =>
  (line: LogLine): boolean =>
    line.msg === msg;

const fixture = useStack('agent-pod');
let stack: Stack;
let kc: KubeConfig;
let dir = '';
let applied: KubeObject[] = [];
const forwarders: Forwarder[] = [];
let hostIp = '';
let apiPort = 0;

beforeAll(async () => {
  stack = fixture.stack;
  kc = fixture.kc;
  // The pods are the agent here.
  await stack.stopAgent();
  dir = await mkdtemp(path.join(tmpdir(), 'gitops-agent-pod-'));

  const image = await writeProductImage(ROOT, path.join(dir, 'gitops.tar'));
  const t0 = Date.now();
  await testNode().importArchive(image.file);
  process.stdout.write(
    `agent-pod: product image assembled in ${image.assemblyMs} ms, imported in ${Date.now() - t0} ms\n`,
  );
  await rm(image.file);

  hostIp = await nodeIp();
  apiPort = Number(new URL(kc.getCurrentCluster()!.server).port);
  const serverPort = Number(new URL(stack.serverUrl).port);
  for (const port of [apiPort, serverPort])
    forwarders.push(await forwardTcp({ host: hostIp, port }, { host: '127.0.0.1', port }));

  const build = path.join(dir, 'kustomize');
  await run('mkdir', ['-p', build]);
  await writeFile(path.join(build, 'token'), await readFile(path.join(stack.dir, 'agent.token'), 'utf8'), {
    mode: 0o600,
  });
  await writeFile(path.join(build, 'ca.crt'), await readFile(stack.caPath, 'utf8'));
  const serverUrl = `wss://${hostname()}:${serverPort}${new URL(stack.connectUrl).pathname}`;
  const aliases = [{ ip: hostIp, hostnames: ['kubernetes.default.svc', hostname()] }];
  await writeFile(path.join(build, 'kustomization.yaml'), runKustomization(build, { serverUrl, apiPort, aliases }));
  await applyKustomization(build);
}, 300_000);

afterAll(async () => {
  // The Deployments first, so the pods stop (the Lease released, the volume let go) before their namespace goes.
  for (const deployment of applied.filter((o) => o.kind === 'Deployment')) {
    await kubeRequest(kc, 'DELETE', `${objectPath(deployment)}?propagationPolicy=Foreground`).catch(() => undefined);
  }
  for (const [ns, selector] of [
    [NAMESPACE, SELECTOR],
    [SERVER_NAMESPACE, SERVER_SELECTOR],
  ]) {
    await waitFor(async () => (await listPods(kc, ns, selector)).length === 0, 60_000, `pods ${selector} gone`).catch(
      () => undefined,
    );
  }
  for (const obj of [...applied].reverse()) {
    if (!obj.metadata.namespace) await kubeRequest(kc, 'DELETE', objectPath(obj)).catch(() => undefined);
  }
  applied = [];
  for (const f of forwarders) await f.close();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

describe('the agent as a pod from manifests/agent and the product image', () => {
  let agents: PodLike[] = [];

  it(
    'runs two replicas, Ready through the kubelet probes, as uid 1000 under Pod Security restricted',
    async () => {
      agents = await waitForReadyPods(kc, NAMESPACE, SELECTOR, 2, PODS_TIMEOUT_MS);
      const ns = await kubeRequest(kc, 'GET', `/api/v1/namespaces/${NAMESPACE}`);
      expect(
        (ns.body as { metadata: { labels: Record<string, string> } }).metadata.labels[
          'pod-security.kubernetes.io/enforce'
        ],
      ).toBe('restricted');
      for (const pod of agents) {
        const full = (await kubeRequest(kc, 'GET', `/api/v1/namespaces/${NAMESPACE}/pods/${pod.metadata.name}`))
          .body as {
          spec: {
            hostNetwork?: boolean;
            containers: Array<{
              image: string;
              readinessProbe: { httpGet: { path: string } };
              livenessProbe: { httpGet: { path: string } };
            }>;
          };
          status: { containerStatuses: Array<{ image: string; restartCount: number }> };
        };
        expect(full.spec.hostNetwork ?? false).toBe(false);
        expect(full.spec.containers[0]).toMatchObject({
          image: PRODUCT_IMAGE,
          readinessProbe: { httpGet: { path: '/readyz' } },
          livenessProbe: { httpGet: { path: '/healthz' } },
        });
        expect(full.status.containerStatuses[0].restartCount).toBe(0);
      }
      // The container processes themselves, as the kernel sees them.
      const procs = await agentProcesses();
      expect(procs.length).toBeGreaterThanOrEqual(2);
      expect([...new Set(procs.map((p) => p.uid))]).toEqual(['1000']);
    },
    PODS_TIMEOUT_MS + 10_000,
  );

  it('elects one replica through the Lease, as the ServiceAccount of the projected token', async () => {
    const holder = await waitFor(() => leaderPod(kc), 30_000, 'a Lease holder');
    expect(agents.map((p) => p.metadata.name)).toContain(holder);
    const events = await syncAuditLog(kc, testAuditLogPath());
    const leaseWrites = writeRequests(events, { namespace: NAMESPACE, username: SERVICE_ACCOUNT, succeededOnly: true })
      .map(describeWrite)
      .filter((w) => w.includes('leases'));
    expect(leaseWrites.length).toBeGreaterThan(0);
  });

  it(
    'applies a commit, whose nginx pods then run, and reverts a manual edit',
    async () => {
      const ns = fixture.ns.name;
      const t0 = Date.now();
      await stack.commit({ 'manifest.yaml': nginxDeployment(ns, 2) }, { message: 'nginx with 2 replicas' });
      await waitForReadyPods(kc, ns, 'app=nginx', 2, PODS_TIMEOUT_MS);
      process.stdout.write(`agent-pod: commit to 2 nginx pods Ready in ${Date.now() - t0} ms (the agent in a pod)\n`);
      const edit = await jsonPatch(
        kc,
        `/apis/apps/v1/namespaces/${ns}/deployments/nginx`,
        [{ op: 'replace', path: '/spec/replicas', value: 5 }],
        'manual-edit',
      );
      expect(edit.status).toBe(200);
      const t1 = Date.now();
      await waitFor(async () => (await deploymentReplicas(kc, ns)) === 2, 10_000, 'replicas back to 2', 10);
      process.stdout.write(`agent-pod: manual edit reverted in ${Date.now() - t1} ms\n`);
      const holder = (await leaderPod(kc))!;
      await expectLogged(kc, holder, '"drift reverted"', msgIs('drift reverted'));
    },
    PODS_TIMEOUT_MS + 30_000,
  );

  it(
    'hands over to the other replica when the leader pod is deleted, which then reverts a manual edit',
    async () => {
      const ns = fixture.ns.name;
      const leader = (await leaderPod(kc))!;
      const standby = agents.map((p) => p.metadata.name).find((n) => n !== leader)!;
      expect(standby).toBeDefined();
      const t0 = Date.now();
      expect((await kubeRequest(kc, 'DELETE', `/api/v1/namespaces/${NAMESPACE}/pods/${leader}`)).status).toBe(200);
      // Usually the standby; the Deployment's replacement pod may win the race for a released Lease.
      const next = await waitFor(
        async () => {
          const holder = await leaderPod(kc);
          return holder && holder !== leader && !holder.startsWith('(no pod)') ? holder : undefined;
        },
        60_000,
        `the Lease held by a replica other than ${leader}`,
        20,
      );
      const handoverMs = Date.now() - t0;
      const edit = await jsonPatch(
        kc,
        `/apis/apps/v1/namespaces/${ns}/deployments/nginx`,
        [{ op: 'replace', path: '/spec/replicas', value: 4 }],
        'manual-edit',
      );
      expect(edit.status).toBe(200);
      await waitFor(
        async () => (await deploymentReplicas(kc, ns)) === 2,
        30_000,
        'replicas back to 2 after the hand-over',
        10,
      );
      const totalMs = Date.now() - t0;
      process.stdout.write(
        `agent-pod: leader pod deleted -> Lease taken over by ${next === standby ? 'the standby' : 'the replacement pod'} ` +
          `in ${handoverMs} ms -> manual edit reverted ${totalMs} ms after the delete\n`,
      );
      await expectLogged(kc, next, '"became leader"', msgIs('became leader'));
      // An edit made before the new leader's watches are up is corrected by its first apply instead.
      await expectLogged(
        kc,
        next,
        'the edit reverted',
        (l) =>
          l.msg === 'drift reverted' ||
          (l.msg === 'applied' && (l.changes ?? []).some((c) => c === `Deployment/${ns}/nginx configured`)),
      );
      // The Deployment replaces the deleted pod: two Ready replicas again, the new one standing by.
      const after = await waitForReadyPods(kc, NAMESPACE, SELECTOR, 2, PODS_TIMEOUT_MS, [leader]);
      expect(after.map((p) => p.metadata.name)).toContain(next);
    },
    PODS_TIMEOUT_MS + 90_000,
  );

  it(
    'also runs with the server as a pod from manifests/server: the agent pods reach it by its Service name',
    async () => {
      // One server at a time for agent1: the process server's registry moves into the pod's volume.
      await stack.stopServer();
      const stateDir = path.join(dir, 'server-state');
      await run('cp', ['-a', stack.serverStateDir, stateDir]);
      await run('chown', ['-R', '1000:1000', stateDir]);
      const build = path.join(dir, 'server-kustomize');
      await run('mkdir', ['-p', build]);
      await makeServerCert(build, [SERVER_SERVICE_NAME, `gitops-server.${SERVER_NAMESPACE}`]);
      // The test Git server needs no token; the manifest mounts one all the same.
      await writeFile(path.join(build, 'token'), 'unused\n', { mode: 0o600 });
      const gitPort = Number(new URL(stack.gitServer.url).port);
      forwarders.push(await forwardTcp({ host: hostIp, port: gitPort }, { host: '127.0.0.1', port: gitPort }));
      await writeFile(
        path.join(build, 'kustomization.yaml'),
        serverKustomization(build, `http://${hostIp}:${gitPort}`),
      );
      const t0 = Date.now();
      await applyObject({
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name: `gitops-server-state-${path.basename(dir).slice(-6).toLowerCase()}` },
        spec: {
          capacity: { storage: '1Gi' },
          accessModes: ['ReadWriteOnce'],
          persistentVolumeReclaimPolicy: 'Retain',
          hostPath: { path: stateDir, type: 'Directory' },
          claimRef: { namespace: SERVER_NAMESPACE, name: 'gitops-server-state' },
        },
      } as KubeObject);
      await applyKustomization(build);
      const [serverPod] = await waitForReadyPods(kc, SERVER_NAMESPACE, SERVER_SELECTOR, 1, PODS_TIMEOUT_MS);
      const full = (
        await kubeRequest(kc, 'GET', `/api/v1/namespaces/${SERVER_NAMESPACE}/pods/${serverPod.metadata.name}`)
      ).body as { status: { podIP: string } };
      process.stdout.write(`agent-pod: server pod Ready in ${Date.now() - t0} ms at ${full.status.podIP}\n`);

      // The agents now use manifests/agent's own server URL (the in-cluster Service name).
      const before = (await listPods(kc, NAMESPACE, SELECTOR)).map((p) => p.metadata.name);
      const agentBuild = path.join(dir, 'kustomize');
      await writeFile(path.join(agentBuild, 'ca.crt'), await readFile(path.join(build, 'ca.crt'), 'utf8'));
      const aliases = [
        { ip: hostIp, hostnames: ['kubernetes.default.svc'] },
        { ip: full.status.podIP, hostnames: [SERVER_SERVICE_NAME] },
      ];
      await writeFile(path.join(agentBuild, 'kustomization.yaml'), runKustomization(agentBuild, { apiPort, aliases }));
      await applyKustomization(agentBuild);
      const agentsNow = await waitForReadyPods(kc, NAMESPACE, SELECTOR, 2, PODS_TIMEOUT_MS, before);

      const ns = fixture.ns.name;
      const t1 = Date.now();
      await stack.commit(
        { 'manifest.yaml': nginxDeployment(ns, 3) },
        { message: 'nginx with 3 replicas', webhook: false },
      );
      await waitForReadyPods(kc, ns, 'app=nginx', 3, PODS_TIMEOUT_MS);
      process.stdout.write(
        `agent-pod: commit to 3 nginx pods Ready in ${Date.now() - t1} ms (server and agent in pods, 2 s poll)\n`,
      );
      const leader = await leaderPod(kc);
      expect(agentsNow.map((p) => p.metadata.name)).toContain(leader);
      await expectLogged(
        kc,
        leader!,
        'the commit applied',
        (l) => l.msg === 'applied' && (l.changes ?? []).includes(`Deployment/${ns}/nginx configured`),
      );
    },
    3 * PODS_TIMEOUT_MS,
  );
});
