/**
 * Captures the real objects that src/agent/health/status.test.ts judges: each scenario below
 * creates objects on a real node (kubelet, containerd; images as e2e/harness/images.ts makes
 * them, offline), waits until the controllers and the kubelet have written the status it is
 * after, and writes `src/agent/health/testdata/<name>.json` = `{ capturedAt, object, pods? }`
 * with managedFields stripped. `capturedAt` is the `now` the test judges with, so graces come
 * out as they did on the node. Not a test (nothing asserts here), run by hand when the rules
 * or Kubernetes change:
 *
 *   npm run build && GITOPS_TEST_NODE_KUBECONFIG=<kubeconfig of a node cluster> \
 *     node dist/e2e/node/capture-health-fixtures.js [name-filter]
 *
 * With a name filter, every scenario still runs (one snapshot may wait on another) but only the
 * snapshots whose name contains it are written.
 *
 * Everything lives in one scratch namespace, deleted at the end. Snapshots marked optional
 * depend on catching a short window (a pod between two crashes); a miss is reported, not fatal.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NGINX_IMAGE, PAUSE_IMAGE } from '../harness/images.js';
import { kubeRequest } from '../harness/kube.js';
import { repoRoot } from '../harness/controlplane.js';
import type { KubeObject } from '../../src/agent/kube/types.js';

type Json = Record<string, unknown>;
type Predicate = (object: Json, pods: Json[]) => boolean;

const OUT_DIR = join(repoRoot(), 'src/agent/health/testdata');
const POLL_MS = 200;
const BUSYBOX = '/bin/busybox';
const MISSING_IMAGE = 'nope.invalid/none:1';

interface Run {
  kc: KubeConfig;
  ns: string;
  filter: string;
  missed: string[];
}

// ---- reading captured JSON loosely (the script only steers; status.ts does the judging) ----

function get(obj: unknown, path: string): unknown {
  let node = obj;
  for (const key of path.split('.')) node = node && typeof node === 'object' ? (node as Json)[key] : undefined;
  return node;
}

function num(obj: unknown, path: string): number {
  const v = get(obj, path);
  return typeof v === 'number' ? v : 0;
}

function conditionIs(obj: unknown, type: string, status: string, reason?: string): boolean {
  const list = get(obj, 'status.conditions');
  return (
    Array.isArray(list) &&
    list.some((c: Json) => c.type === type && c.status === status && (reason === undefined || c.reason === reason))
  );
}

function observed(obj: unknown): boolean {
  return num(obj, 'status.observedGeneration') === num(obj, 'metadata.generation');
}

function containers(pod: Json): Json[] {
  const list = [get(pod, 'status.initContainerStatuses'), get(pod, 'status.containerStatuses')];
  return list.flatMap((l) => (Array.isArray(l) ? (l as Json[]) : []));
}

const anyContainer =
  (test: (cs: Json) => boolean): Predicate =>
  (_o, pods) =>
    pods.some((p) => containers(p).some(test));

const waiting = (reason: string): Predicate => anyContainer((cs) => get(cs, 'state.waiting.reason') === reason);

// ---- the API ----

function strip(obj: Json): Json {
  const metadata = { ...(obj.metadata as Json) };
  delete metadata.managedFields;
  return { ...obj, metadata };
}

async function request(run: Run, method: string, path: string, body?: unknown, type?: string): Promise<Json> {
  const res = await kubeRequest(run.kc, method, path, body, type);
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as Json;
}

/** Where each kind this script creates lives in the API (a table: the script needs no discovery). */
const RESOURCES: Record<string, { api: string; resource: string; clusterScoped?: true }> = {
  Deployment: { api: '/apis/apps/v1', resource: 'deployments' },
  StatefulSet: { api: '/apis/apps/v1', resource: 'statefulsets' },
  DaemonSet: { api: '/apis/apps/v1', resource: 'daemonsets' },
  Job: { api: '/apis/batch/v1', resource: 'jobs' },
  PodDisruptionBudget: { api: '/apis/policy/v1', resource: 'poddisruptionbudgets' },
  PersistentVolumeClaim: { api: '/api/v1', resource: 'persistentvolumeclaims' },
  Service: { api: '/api/v1', resource: 'services' },
  ConfigMap: { api: '/api/v1', resource: 'configmaps' },
  CustomResourceDefinition: {
    api: '/apis/apiextensions.k8s.io/v1',
    resource: 'customresourcedefinitions',
    clusterScoped: true,
  },
};

function collection(object: KubeObject, ns: string): string {
  const { api, resource, clusterScoped } = RESOURCES[object.kind];
  return clusterScoped ? `${api}/${resource}` : `${api}/namespaces/${ns}/${resource}`;
}

async function podsOf(run: Run, object: Json): Promise<Json[]> {
  const labels = get(object, 'spec.selector.matchLabels');
  if (!labels || typeof labels !== 'object') return [];
  const selector = Object.entries(labels as Record<string, string>)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const list = await request(
    run,
    'GET',
    `/api/v1/namespaces/${run.ns}/pods?labelSelector=${encodeURIComponent(selector)}`,
  );
  const items = (list.items as Json[]).map((p) => strip({ apiVersion: 'v1', kind: 'Pod', ...p }));
  return items.sort((a, b) => String(get(a, 'metadata.name')).localeCompare(String(get(b, 'metadata.name'))));
}

async function save(run: Run, name: string, object: Json, pods?: Json[]): Promise<void> {
  const doc = { capturedAt: new Date().toISOString(), object: strip(object), ...(pods ? { pods } : {}) };
  await writeFile(join(OUT_DIR, `${name}.json`), `${JSON.stringify(doc, null, 2)}\n`);
  console.log(`captured ${name}`);
}

/**
 * Creates `object` in the scratch namespace and returns the path of the object itself; the
 * API server's answer (the object before any controller saw it) is saved as `createdSnapshot`.
 */
async function create(run: Run, object: KubeObject, createdSnapshot?: string): Promise<string> {
  const path = collection(object, run.ns);
  const created = await request(run, 'POST', path, object);
  if (createdSnapshot?.includes(run.filter)) await save(run, createdSnapshot, created);
  return `${path}/${object.metadata.name}`;
}

interface Snapshot {
  name: string;
  when: Predicate;
  optional?: boolean;
}

/**
 * Polls the object (and, for a workload, its pods) until every snapshot's predicate has held
 * once, saving each the first time it holds; gives up after `timeoutMs`.
 */
async function capture(run: Run, path: string, snapshots: Snapshot[], timeoutMs = 120_000): Promise<void> {
  const left = [...snapshots];
  const deadline = Date.now() + timeoutMs;
  while (left.length > 0 && Date.now() < deadline) {
    const object = await request(run, 'GET', path);
    const pods = await podsOf(run, object);
    for (const snap of [...left]) {
      if (!snap.when(object, pods)) continue;
      const workload = get(object, 'spec.selector.matchLabels') !== undefined;
      if (snap.name.includes(run.filter)) await save(run, snap.name, object, workload ? pods : undefined);
      left.splice(left.indexOf(snap), 1);
    }
    await sleep(POLL_MS);
  }
  for (const snap of left) {
    console.log(`${snap.optional ? 'missed (optional)' : 'MISSED'} ${snap.name}`);
    if (!snap.optional) run.missed.push(snap.name);
  }
}

// ---- manifests ----

function deployment(name: string, container: Json, extra: Json = {}): KubeObject {
  const labels = { app: name };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: { containers: [{ name: 'main', ...container }] } },
      ...extra,
    },
  };
}

const nginx = { image: NGINX_IMAGE, readinessProbe: { httpGet: { path: '/', port: 80 }, periodSeconds: 1 } };
const shell = (script: string): Json => ({ image: PAUSE_IMAGE, command: [BUSYBOX, 'sh', '-c', script] });

function job(name: string, script: string): KubeObject {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name },
    spec: {
      backoffLimit: 0,
      template: { spec: { restartPolicy: 'Never', containers: [{ name: 'main', ...shell(script) }] } },
    },
  };
}

// ---- scenarios ----

async function availableDeployment(run: Run): Promise<void> {
  const path = await create(run, deployment('web', nginx, { replicas: 3 }), 'deployment-created');
  await capture(run, path, [
    {
      name: 'deployment-rolling-out',
      optional: true,
      when: (o) => observed(o) && num(o, 'status.availableReplicas') > 0 && num(o, 'status.availableReplicas') < 3,
    },
    {
      name: 'deployment-available',
      when: (o) => observed(o) && num(o, 'status.availableReplicas') === 3 && conditionIs(o, 'Available', 'True'),
    },
  ]);
  const pdb = (name: string, minAvailable: number): KubeObject => ({
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name },
    spec: { minAvailable, selector: { matchLabels: { app: 'web' } } },
  });
  const enough = await create(run, pdb('web-enough', 2));
  await capture(run, enough, [
    { name: 'pdb-sufficient', when: (o) => observed(o) && num(o, 'status.currentHealthy') === 3 },
  ]);
  const short = await create(run, pdb('web-short', 5));
  await capture(run, short, [
    { name: 'pdb-insufficient', when: (o) => observed(o) && num(o, 'status.desiredHealthy') === 5 },
  ]);
}

async function missingImage(run: Run): Promise<void> {
  const path = await create(run, deployment('nope', { image: MISSING_IMAGE }));
  await capture(run, path, [
    { name: 'deployment-err-image-pull', when: waiting('ErrImagePull'), optional: true },
    { name: 'deployment-image-pull-backoff', when: waiting('ImagePullBackOff') },
  ]);
}

async function neverPull(run: Run): Promise<void> {
  const path = await create(run, deployment('never', { image: MISSING_IMAGE, imagePullPolicy: 'Never' }));
  await capture(run, path, [{ name: 'deployment-err-image-never-pull', when: waiting('ErrImageNeverPull') }]);
}

async function progressDeadline(run: Run): Promise<void> {
  const path = await create(run, deployment('late', { image: MISSING_IMAGE }, { progressDeadlineSeconds: 5 }));
  const exceeded: Predicate = (o) => conditionIs(o, 'Progressing', 'False', 'ProgressDeadlineExceeded');
  await capture(run, path, [{ name: 'deployment-progress-deadline-exceeded', when: exceeded }]);
}

async function missingConfigMap(run: Run): Promise<void> {
  const env = [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'absent', key: 'x' } } }];
  const path = await create(run, deployment('config', { ...shell('sleep 3600'), env }));
  await capture(run, path, [
    { name: 'deployment-create-container-config-error', when: waiting('CreateContainerConfigError') },
  ]);
}

async function crashLoop(run: Run): Promise<void> {
  const path = await create(run, deployment('crash', shell('exit 1')));
  await capture(run, path, [{ name: 'deployment-crashloop', when: waiting('CrashLoopBackOff') }]);
  // The fix rolls out while the old pod still crash-loops: that old pod must not fail the rollout.
  // The probe's delay keeps the new pod unready for a while, so the moment can be caught.
  const probe = { exec: { command: [BUSYBOX, 'true'] }, initialDelaySeconds: 5, periodSeconds: 1 };
  const fixed = { name: 'main', ...shell('sleep 3600'), readinessProbe: probe };
  const fix = { spec: { template: { spec: { containers: [fixed] } } } };
  await request(run, 'PATCH', path, fix, 'application/merge-patch+json');
  const revisions = (pods: Json[]): number =>
    new Set(pods.map((p) => get(p, 'metadata.labels.pod-template-hash'))).size;
  const rolling: Predicate = (o, pods) => observed(o) && revisions(pods) === 2 && waiting('CrashLoopBackOff')(o, pods);
  const done: Predicate = (o, pods) => observed(o) && pods.length === 1 && conditionIs(o, 'Available', 'True');
  await capture(run, path, [
    { name: 'deployment-fix-rolling-out', when: rolling },
    { name: 'deployment-fix-rolled-out', when: done },
  ]);
  // A container that runs a few seconds before exiting shows the loop between two back-offs.
  const slow = await create(run, deployment('crash-slow', shell('sleep 4; exit 2')));
  const between = anyContainer((cs) => num(cs, 'restartCount') >= 3 && get(cs, 'state.running') !== undefined);
  await capture(run, slow, [{ name: 'deployment-crashloop-between-backoffs', when: between }], 180_000);
}

async function jobs(run: Run): Promise<void> {
  const done = await create(run, job('done', 'sleep 2; exit 0'), 'job-created');
  await capture(run, done, [
    { name: 'job-running', optional: true, when: (o) => num(o, 'status.active') === 1 && num(o, 'status.ready') === 1 },
    { name: 'job-complete', when: (o) => conditionIs(o, 'Complete', 'True') },
  ]);
  const broken = await create(run, job('broken', 'exit 1'));
  await capture(run, broken, [{ name: 'job-failed', when: (o) => conditionIs(o, 'Failed', 'True') }]);
}

async function statefulSet(run: Run): Promise<void> {
  const labels = { app: 'db' };
  const sts: KubeObject = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name: 'db' },
    spec: {
      replicas: 2,
      serviceName: 'db',
      selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: { containers: [{ name: 'main', ...nginx }] } },
    },
  };
  const path = await create(run, sts, 'statefulset-created');
  const ready: Predicate = (o) =>
    observed(o) &&
    num(o, 'status.readyReplicas') === 2 &&
    get(o, 'status.currentRevision') === get(o, 'status.updateRevision');
  await capture(run, path, [{ name: 'statefulset-ready', when: ready }]);
  // Partition 1: only ordinal 1 moves to the new revision, ordinal 0 stays on the old one on purpose.
  const patch = {
    spec: {
      updateStrategy: { rollingUpdate: { partition: 1 } },
      template: { metadata: { annotations: { 'health.gitops.test/rev': '2' } } },
    },
  };
  await request(run, 'PATCH', path, patch, 'application/merge-patch+json');
  const partitioned: Predicate = (o) =>
    observed(o) && num(o, 'status.updatedReplicas') === 1 && num(o, 'status.readyReplicas') === 2;
  await capture(run, path, [{ name: 'statefulset-partition-rolled-out', when: partitioned }]);
}

async function daemonSet(run: Run): Promise<void> {
  const labels = { app: 'agent' };
  const ds: KubeObject = {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'agent' },
    spec: {
      selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: { containers: [{ name: 'main', ...nginx }] } },
    },
  };
  const path = await create(run, ds, 'daemonset-created');
  const available: Predicate = (o) =>
    observed(o) &&
    num(o, 'status.desiredNumberScheduled') > 0 &&
    num(o, 'status.numberAvailable') === num(o, 'status.desiredNumberScheduled');
  await capture(run, path, [{ name: 'daemonset-available', when: available }]);
}

async function plainObjects(run: Run): Promise<void> {
  const pvc: KubeObject = {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: 'data' },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
  };
  const pvcPath = await create(run, pvc);
  await capture(run, pvcPath, [{ name: 'pvc-pending', when: (o) => get(o, 'status.phase') === 'Pending' }]);
  const service = (name: string, type: string): KubeObject => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name },
    spec: { type, selector: { app: 'web' }, ports: [{ port: 80 }] },
  });
  await capture(run, await create(run, service('web', 'ClusterIP')), [{ name: 'service-clusterip', when: () => true }]);
  const lb = await create(run, service('web-lb', 'LoadBalancer'));
  await capture(run, lb, [{ name: 'service-loadbalancer-pending', when: () => true }]);
  const cm: KubeObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings' }, data: { a: '1' } };
  await capture(run, await create(run, cm), [{ name: 'configmap', when: () => true }]);
}

function crd(plural: string, kind: string, group: string): KubeObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${group}` },
    spec: {
      group,
      scope: 'Namespaced',
      names: { plural, singular: plural.slice(0, -1), kind, listKind: `${kind}List` },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
          subresources: { status: {} },
        },
      ],
    },
  };
}

/** CRDs are cluster-scoped: named after the scratch namespace so that runs never collide. */
async function customResourceDefinitions(run: Run): Promise<void> {
  const group = `${run.ns}.gitops.test`;
  const widgets = await create(run, crd('widgets', 'Widget', group), 'crd-created');
  await capture(run, widgets, [{ name: 'crd-established', when: (o) => conditionIs(o, 'Established', 'True') }]);
  // A second CRD of the same group claiming the same kind: the API server refuses its names.
  const gadgets = await create(run, crd('gadgets', 'Widget', group));
  const refused: Predicate = (o) => conditionIs(o, 'NamesAccepted', 'False');
  await capture(run, gadgets, [{ name: 'crd-names-not-accepted', when: refused }]);
  for (const path of [widgets, gadgets]) await request(run, 'DELETE', path);
}

async function main(): Promise<void> {
  const kubeconfig = process.env.GITOPS_TEST_NODE_KUBECONFIG;
  if (!kubeconfig) throw new Error('GITOPS_TEST_NODE_KUBECONFIG is not set: point it at a node cluster');
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const ns = `health-fixtures-${randomBytes(3).toString('hex')}`;
  const run: Run = { kc, ns, filter: process.argv[2] ?? '', missed: [] };
  await mkdir(OUT_DIR, { recursive: true });
  const namespace = await request(run, 'POST', '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: ns },
  });
  await save(run, 'namespace-active', namespace);
  try {
    const scenarios = [
      availableDeployment,
      missingImage,
      neverPull,
      progressDeadline,
      missingConfigMap,
      crashLoop,
      jobs,
      statefulSet,
      daemonSet,
      plainObjects,
      customResourceDefinitions,
    ];
    const results = await Promise.allSettled(scenarios.map((s) => s(run)));
    for (const r of results) if (r.status === 'rejected') run.missed.push(String(r.reason));
  } finally {
    await request(run, 'DELETE', `/api/v1/namespaces/${ns}`);
    await save(run, 'namespace-terminating', await request(run, 'GET', `/api/v1/namespaces/${ns}`));
  }
  if (run.missed.length > 0) throw new Error(`not captured: ${run.missed.join('; ')}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
