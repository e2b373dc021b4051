/**
 * Test fixtures shared by the plan tests and the plan benchmark: desired objects as written in Git
 * and the live objects the API server returns for them (defaults, allocated and server-owned
 * fields filled in as kube-apiserver v1.36 does).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KubeObject } from '../types.js';
import { extractListKeys, type ListKeys } from '../schema.js';

const here = dirname(fileURLToPath(import.meta.url));

export function loadDoc(name: string): unknown {
  return JSON.parse(readFileSync(join(here, name), 'utf8'));
}

export const appsDoc = loadDoc('openapi-v3-apps-v1.json');
export const coreDoc = loadDoc('openapi-v3-api-v1.json');
export const deploymentKeys: ListKeys = extractListKeys(appsDoc, { group: 'apps', version: 'v1', kind: 'Deployment' });
export const serviceKeys: ListKeys = extractListKeys(coreDoc, { group: '', version: 'v1', kind: 'Service' });
export const configMapKeys: ListKeys = extractListKeys(coreDoc, { group: '', version: 'v1', kind: 'ConfigMap' });
export const secretKeys: ListKeys = extractListKeys(coreDoc, { group: '', version: 'v1', kind: 'Secret' });

export function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

export function deployment(name = 'nginx', replicas = 2): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'default', labels: { 'app.kubernetes.io/name': name } },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [
            {
              name: 'nginx',
              image: 'nginx:1.27',
              ports: [{ containerPort: 80 }],
              env: [
                { name: 'MODE', value: 'prod' },
                { name: 'LEVEL', value: '3' },
              ],
              resources: { limits: { cpu: '0.5', memory: '1024Mi' }, requests: { cpu: 1 } },
            },
          ],
        },
      },
    },
  };
}

/** What the API server stores for a desired Deployment: defaults, normalised quantities, metadata, status. */
export function liveDeployment(desired: KubeObject, rv = '1001'): KubeObject {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the fixture edits spec by deep paths
  const live = clone(desired) as KubeObject & { spec: any };
  live.metadata = {
    ...live.metadata,
    uid: 'u-1',
    resourceVersion: rv,
    generation: 1,
    creationTimestamp: '2026-01-01T00:00:00Z',
    managedFields: [{ manager: 'gitops-agent', operation: 'Update' }],
  };
  live.spec.progressDeadlineSeconds = 600;
  live.spec.revisionHistoryLimit = 10;
  live.spec.strategy = { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } };
  const pod = live.spec.template.spec;
  pod.dnsPolicy = 'ClusterFirst';
  pod.restartPolicy = 'Always';
  pod.schedulerName = 'default-scheduler';
  pod.securityContext = {};
  pod.terminationGracePeriodSeconds = 30;
  for (const c of pod.containers) {
    c.imagePullPolicy = 'IfNotPresent';
    c.terminationMessagePath = '/dev/termination-log';
    c.terminationMessagePolicy = 'File';
    for (const p of c.ports ?? []) p.protocol = 'TCP';
    const norm: Record<string, string> = { '0.5': '500m', '1024Mi': '1Gi', '1': '1' };
    for (const m of [c.resources?.limits, c.resources?.requests])
      if (m) for (const k of Object.keys(m)) m[k] = norm[String(m[k])] ?? String(m[k]);
  }
  live.status = { observedGeneration: 1, replicas: 2, conditions: [{ type: 'Available', status: 'True' }] };
  return live;
}

export function service(name = 'nginx'): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default' },
    spec: { selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
  };
}

export function liveService(desired: KubeObject, rv = '2001'): KubeObject {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the fixture edits spec by deep paths
  const live = clone(desired) as KubeObject & { spec: any };
  live.metadata = { ...live.metadata, uid: 'u-2', resourceVersion: rv, creationTimestamp: '2026-01-01T00:00:00Z' };
  Object.assign(live.spec, {
    clusterIP: '10.96.12.34',
    clusterIPs: ['10.96.12.34'],
    type: 'ClusterIP',
    sessionAffinity: 'None',
    ipFamilies: ['IPv4'],
    ipFamilyPolicy: 'SingleStack',
    internalTrafficPolicy: 'Cluster',
  });
  for (const p of live.spec.ports) p.protocol = 'TCP';
  live.status = { loadBalancer: {} };
  return live;
}

export function configMap(name = 'settings'): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace: 'default' },
    data: { 'app.conf': 'x=1\n', mode: 'prod' },
  };
}

export function liveConfigMap(desired: KubeObject, rv = '3001'): KubeObject {
  const live = clone(desired);
  live.metadata = { ...live.metadata, uid: 'u-3', resourceVersion: rv, creationTimestamp: '2026-01-01T00:00:00Z' };
  return live;
}
