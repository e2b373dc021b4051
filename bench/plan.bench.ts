/**
 * Benchmark of the plan stage on an unchanged re-sync: 1,000 typical objects (Deployments,
 * Services, ConfigMaps) whose live copies carry server defaults, normalised quantities, status and
 * the applied-fields annotation, so every plan must come out 'none'. Prints one JSON line.
 *
 * Three passes: `coldMs` (new desired objects: field sets encoded for the first time), `warmMs`
 * (the same desired objects again, as on a periodic re-sync with the commit unchanged), and
 * `driftEventUs` (one object re-planned per watch event: p50 and max over all objects).
 * List keys come from the real apiserver OpenAPI documents in src/agent/kube/testdata.
 * Run: `npm run build && node dist/bench/plan.bench.js`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { desiredHash, planObject } from '../src/agent/reconcile/plan.js';
import { extractListKeys, type ListKeys } from '../src/agent/kube/schema.js';
import type { KubeObject } from '../src/agent/kube/types.js';

// Run from source (bench/) or from the build (dist/bench/): the JSON documents stay in src.
const here = dirname(fileURLToPath(import.meta.url));
const testdata = [
  join(here, '..', 'src', 'agent', 'kube', 'testdata'),
  join(here, '..', '..', 'src', 'agent', 'kube', 'testdata'),
].find((d) => existsSync(d)) as string;
const load = (f: string): unknown => JSON.parse(readFileSync(join(testdata, f), 'utf8'));
const apps = load('openapi-v3-apps-v1.json');
const core = load('openapi-v3-api-v1.json');
const keys: Record<string, ListKeys> = {
  Deployment: extractListKeys(apps, { group: 'apps', version: 'v1', kind: 'Deployment' }),
  Service: extractListKeys(core, { group: '', version: 'v1', kind: 'Service' }),
  ConfigMap: extractListKeys(core, { group: '', version: 'v1', kind: 'ConfigMap' }),
};

// Test data is free-form JSON read and edited by deep paths; a type for each would restate the fixture.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

function desiredObject(i: number): KubeObject {
  const name = `app-${i}`;
  const labels = { 'app.kubernetes.io/name': name, 'app.kubernetes.io/part-of': 'bench' };
  const meta = { name, namespace: 'bench', labels, annotations: { 'gitops.dev/owning-inventory': 'agent1/bench' } };
  switch (i % 3) {
    case 0:
      return {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: meta,
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: name } },
          template: {
            metadata: { labels: { app: name } },
            spec: {
              containers: [
                {
                  name: 'web',
                  image: 'nginx:1.27',
                  ports: [{ containerPort: 80 }],
                  env: [
                    { name: 'MODE', value: 'prod' },
                    { name: 'LEVEL', value: '3' },
                    { name: 'NAME', value: name },
                  ],
                  resources: { limits: { cpu: '0.5', memory: '256Mi' }, requests: { cpu: '100m', memory: '128Mi' } },
                  readinessProbe: { httpGet: { path: '/healthz', port: 80 } },
                  volumeMounts: [{ name: 'conf', mountPath: '/etc/app' }],
                },
              ],
              volumes: [{ name: 'conf', configMap: { name } }],
            },
          },
        },
      };
    case 1:
      return {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: meta,
        spec: { selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
      };
    default:
      return {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: meta,
        data: { 'app.conf': `name=${name}\nlevel=3\n`, mode: 'prod' },
      };
  }
}

/** The live object the API server would hold after our create. */
function liveObject(desired: KubeObject, appliedFields: string, i: number): KubeObject {
  const live = JSON.parse(JSON.stringify(desired)) as Json;
  live.metadata = {
    ...live.metadata,
    uid: `uid-${i}`,
    resourceVersion: String(1000 + i),
    creationTimestamp: '2026-01-01T00:00:00Z',
    generation: 1,
    annotations: { ...live.metadata.annotations, 'gitops.dev/applied-fields': appliedFields },
    managedFields: [
      {
        manager: 'gitops-agent',
        operation: 'Update',
        apiVersion: live.apiVersion,
        fieldsType: 'FieldsV1',
        fieldsV1: {},
      },
    ],
  };
  if (live.kind === 'Deployment') {
    Object.assign(live.spec, {
      progressDeadlineSeconds: 600,
      revisionHistoryLimit: 10,
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } },
    });
    const pod = live.spec.template.spec;
    Object.assign(pod, {
      dnsPolicy: 'ClusterFirst',
      restartPolicy: 'Always',
      schedulerName: 'default-scheduler',
      securityContext: {},
      terminationGracePeriodSeconds: 30,
    });
    for (const c of pod.containers) {
      Object.assign(c, {
        imagePullPolicy: 'IfNotPresent',
        terminationMessagePath: '/dev/termination-log',
        terminationMessagePolicy: 'File',
      });
      c.ports[0].protocol = 'TCP';
      c.resources.limits.cpu = '500m';
      Object.assign(c.readinessProbe, {
        timeoutSeconds: 1,
        periodSeconds: 10,
        successThreshold: 1,
        failureThreshold: 3,
      });
      c.readinessProbe.httpGet.scheme = 'HTTP';
    }
    pod.volumes[0].configMap.defaultMode = 420;
    live.status = {
      observedGeneration: 1,
      replicas: 2,
      readyReplicas: 2,
      conditions: [{ type: 'Available', status: 'True' }],
    };
  } else if (live.kind === 'Service') {
    Object.assign(live.spec, {
      clusterIP: '10.96.0.10',
      clusterIPs: ['10.96.0.10'],
      type: 'ClusterIP',
      sessionAffinity: 'None',
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      internalTrafficPolicy: 'Cluster',
    });
    live.spec.ports[0].protocol = 'TCP';
    live.status = { loadBalancer: {} };
  }
  return live as KubeObject;
}

const N = 1000;
const lives: KubeObject[] = [];
for (let i = 0; i < N; i++) {
  const d = desiredObject(i);
  lives.push(liveObject(d, planObject({ desired: d, listKeys: keys[d.kind] }).appliedFields, i));
}

function pass(desired: KubeObject[]): number {
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const plan = planObject({ desired: desired[i], live: lives[i], listKeys: keys[desired[i].kind] });
    if (plan.action !== 'none')
      throw new Error(
        `${desired[i].kind}/${desired[i].metadata.name}: expected no change, got ${JSON.stringify(plan.patch)}`,
      );
  }
  return performance.now() - t0;
}

const fresh = (): KubeObject[] => Array.from({ length: N }, (_, i) => desiredObject(i));
const coldMs = pass(fresh());
const warmSet = fresh();
pass(warmSet);
const warmRuns = [pass(warmSet), pass(warmSet), pass(warmSet)];
const coldRuns = [pass(fresh()), pass(fresh()), pass(fresh())];
// desiredHash is computed once per new desired object (the key of the normalised-form cache).
const hashSet = fresh();
let t0 = performance.now();
for (const d of hashSet) desiredHash(d);
const hashMs = performance.now() - t0;
const events: number[] = [];
for (let i = 0; i < N; i++) {
  t0 = performance.now();
  planObject({ desired: warmSet[i], live: lives[i], listKeys: keys[warmSet[i].kind] });
  events.push((performance.now() - t0) * 1000);
}
events.sort((a, b) => a - b);
const r = (x: number): number => Math.round(x * 100) / 100;
console.log(
  JSON.stringify({
    bench: 'plan-unchanged-resync',
    objects: N,
    node: process.version,
    firstColdMs: r(coldMs),
    coldMs: r(Math.min(...coldRuns)),
    warmMs: r(Math.min(...warmRuns)),
    hashMs: r(hashMs),
    driftEventUs: { p50: r(events[N >> 1]), p99: r(events[Math.floor(N * 0.99)]), max: r(events[N - 1]) },
  }),
);
