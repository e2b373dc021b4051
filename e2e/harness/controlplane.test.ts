// Proves the control-plane harness against the real etcd, kube-apiserver and
// kube-controller-manager that global setup started: defaulting, controllers, watches, JSON patch
// with optimistic locking, the audit log, foreground deletion and namespace deletion, and a
// TokenRequest token used "as in a pod".
import { describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  Watch,
  type V1Deployment,
} from '@kubernetes/client-node';
import { describeWrite, isControllerUser, syncAuditLog, writeRequests } from './audit.js';
import { ADMIN_USERNAME, startControlPlane } from './controlplane.js';
import { useNamespace } from './jest-kube.js';
import {
  freshNamespace,
  jsonPatch,
  kubeRequest,
  testAuditLogPath,
  testKubeConfig,
  waitFor,
  waitForGone,
} from './kube.js';
import { writePodCredentials } from './pod-credentials.js';

const FIELD_MANAGER = 'gitops-test';

function deployment(name: string): V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } },
    },
  };
}

describe('the test control plane', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const ns = useNamespace('harness');

  it('returns server-defaulted fields on a created Deployment, and its controller creates the ReplicaSet', async () => {
    const namespaces = await core.listNamespace();
    expect(namespaces.items.map((n) => n.metadata?.name)).toContain(ns.name);

    const created = await apps.createNamespacedDeployment({
      namespace: ns.name,
      body: deployment('web'),
      fieldManager: FIELD_MANAGER,
    });
    expect(created.spec?.strategy?.type).toBe('RollingUpdate');
    expect(created.spec?.revisionHistoryLimit).toBe(10);
    expect(created.spec?.template.spec?.containers[0]?.imagePullPolicy).toBe('IfNotPresent');

    const rs = await waitFor(
      async () => (await apps.listNamespacedReplicaSet({ namespace: ns.name })).items[0],
      20_000,
      'the ReplicaSet',
    );
    expect(rs.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'Deployment',
      name: 'web',
      uid: created.metadata?.uid,
    });
    expect(rs.spec?.replicas).toBe(2);
  });

  it('delivers ADDED and MODIFIED events to a watch', async () => {
    const seen: string[] = [];
    const watch = new Watch(kc);
    const abort = await watch.watch(
      `/api/v1/namespaces/${ns.name}/configmaps`,
      { fieldSelector: 'metadata.name=watched' },
      (type) => seen.push(type),
      () => {},
    );
    try {
      await core.createNamespacedConfigMap({
        namespace: ns.name,
        body: { metadata: { name: 'watched' }, data: { a: '1' } },
      });
      await core.patchNamespacedConfigMap({
        namespace: ns.name,
        name: 'watched',
        body: [{ op: 'replace', path: '/data/a', value: '2' }],
      });
      await waitFor(() => seen.includes('MODIFIED'), 10_000, 'a MODIFIED event');
      expect(seen).toEqual(['ADDED', 'MODIFIED']);
    } finally {
      abort.abort();
    }
  });

  it('applies an RFC 6902 JSON patch and rejects one whose test op fails with 422', async () => {
    const cm = await core.createNamespacedConfigMap({
      namespace: ns.name,
      body: { metadata: { name: 'cfg' }, data: { color: 'blue' } },
    });
    const path = `/api/v1/namespaces/${ns.name}/configmaps/cfg`;
    const rv = cm.metadata?.resourceVersion;

    const ok = await jsonPatch(kc, path, [
      { op: 'test', path: '/metadata/resourceVersion', value: rv },
      { op: 'replace', path: '/data/color', value: 'green' },
    ]);
    expect(ok.status).toBe(200);
    expect((await core.readNamespacedConfigMap({ namespace: ns.name, name: 'cfg' })).data).toEqual({ color: 'green' });

    const stale = await jsonPatch(kc, path, [
      { op: 'test', path: '/metadata/resourceVersion', value: rv },
      { op: 'replace', path: '/data/color', value: 'red' },
    ]);
    expect(stale.status).toBe(422);
    expect((await core.readNamespacedConfigMap({ namespace: ns.name, name: 'cfg' })).data).toEqual({ color: 'green' });
  });

  it("audit-logs exactly the writes this test made, told apart from the controllers' writes", async () => {
    await apps.createNamespacedDeployment({ namespace: ns.name, body: deployment('web'), fieldManager: FIELD_MANAGER });
    await apps.createNamespacedDeployment({ namespace: ns.name, body: deployment('dry'), dryRun: 'All' });
    await core.createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name: 'cfg' }, data: { a: '1' } } });
    const path = `/api/v1/namespaces/${ns.name}/configmaps/cfg`;
    expect((await jsonPatch(kc, path, [{ op: 'replace', path: '/data/a', value: '2' }])).status).toBe(200);
    expect(
      (
        await jsonPatch(kc, path, [
          { op: 'test', path: '/data/a', value: 'nope' },
          { op: 'remove', path: '/data/a' },
        ])
      ).status,
    ).toBe(422);
    await core.deleteNamespacedConfigMap({ namespace: ns.name, name: 'cfg' });
    await waitFor(
      async () => (await apps.listNamespacedReplicaSet({ namespace: ns.name })).items.length > 0,
      20_000,
      'the ReplicaSet',
    );
    // The service-account controller works its own queue: on a loaded machine it may create the
    // namespace's default ServiceAccount after the ReplicaSet exists, so wait for both writes.
    await waitFor(
      async () =>
        (await core.listNamespacedServiceAccount({ namespace: ns.name })).items.some(
          (sa) => sa.metadata?.name === 'default',
        ),
      20_000,
      'the default ServiceAccount',
    );

    const events = await syncAuditLog(kc, testAuditLogPath());
    const ours = writeRequests(events, { namespace: ns.name, username: ADMIN_USERNAME });
    expect(ours.map(describeWrite)).toEqual([
      `create namespaces ${ns.name} 201`, // by useNamespace, before the test
      `create apps/deployments ${ns.name}/web 201`,
      `create configmaps ${ns.name}/cfg 201`,
      `patch configmaps ${ns.name}/cfg 200`,
      `patch configmaps ${ns.name}/cfg 422`,
      `delete configmaps ${ns.name}/cfg 200`,
    ]);
    const succeeded = writeRequests(events, { namespace: ns.name, username: ADMIN_USERNAME, succeededOnly: true });
    expect(succeeded.map(describeWrite)).toEqual([
      `create namespaces ${ns.name} 201`,
      `create apps/deployments ${ns.name}/web 201`,
      `create configmaps ${ns.name}/cfg 201`,
      `patch configmaps ${ns.name}/cfg 200`,
      `delete configmaps ${ns.name}/cfg 200`,
    ]);

    const theirs = writeRequests(events, { namespace: ns.name })
      .filter((e) => isControllerUser(e.user.username))
      .map((e) => `${e.user.username} ${describeWrite(e)}`);
    expect(theirs).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          new RegExp(
            `^system:serviceaccount:kube-system:deployment-controller create apps/replicasets ${ns.name}/web-\\w+ 201$`,
          ),
        ),
        `system:serviceaccount:kube-system:service-account-controller create serviceaccounts ${ns.name}/default 201`,
      ]),
    );
    expect(
      writeRequests(events, { namespace: ns.name, excludeControllers: true }).every(
        (e) => e.user.username === ADMIN_USERNAME,
      ),
    ).toBe(true);
  });

  it('completes a foreground delete: the garbage collector removes the ReplicaSet, then the Deployment', async () => {
    await apps.createNamespacedDeployment({ namespace: ns.name, body: deployment('web'), fieldManager: FIELD_MANAGER });
    await waitFor(
      async () => (await apps.listNamespacedReplicaSet({ namespace: ns.name })).items.length > 0,
      20_000,
      'the ReplicaSet',
    );
    await apps.deleteNamespacedDeployment({ namespace: ns.name, name: 'web', propagationPolicy: 'Foreground' });
    await waitForGone(kc, `/apis/apps/v1/namespaces/${ns.name}/deployments/web`);
    expect((await apps.listNamespacedReplicaSet({ namespace: ns.name })).items).toEqual([]);
  });

  it('removes a deleted namespace together with its contents', async () => {
    const doomed = await freshNamespace('doomed', kc);
    await core.createNamespacedConfigMap({ namespace: doomed.name, body: { metadata: { name: 'x' } } });
    await doomed.delete();
    const phase = (await kubeRequest(kc, 'GET', `/api/v1/namespaces/${doomed.name}`)).body as {
      status?: { phase?: string };
    };
    expect(['Terminating', undefined]).toContain(phase.status?.phase);
    await waitForGone(kc, `/api/v1/namespaces/${doomed.name}`);
  });

  it('accepts a TokenRequest token used as in a pod, with RBAC denying until a binding grants access', async () => {
    await core.createNamespacedServiceAccount({ namespace: ns.name, body: { metadata: { name: 'agent' } } });
    const creds = await writePodCredentials(kc, { namespace: ns.name, serviceAccount: 'agent' });
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    try {
      Object.assign(process.env, creds.env);
      const pod = new KubeConfig();
      pod.loadFromCluster(creds.pathPrefix);
      expect(pod.getContextObject(pod.getCurrentContext())?.namespace).toBe(ns.name);
      const path = `/api/v1/namespaces/${ns.name}/configmaps`;
      expect((await kubeRequest(pod, 'GET', path)).status).toBe(403);
      await kc.makeApiClient(RbacAuthorizationV1Api).createNamespacedRoleBinding({
        namespace: ns.name,
        body: {
          metadata: { name: 'agent-view' },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
          subjects: [{ kind: 'ServiceAccount', name: 'agent', namespace: ns.name }],
        },
      });
      await waitFor(
        async () => (await kubeRequest(pod, 'GET', path)).status === 200,
        10_000,
        'RBAC to allow the ServiceAccount',
      );
    } finally {
      process.env.KUBERNETES_SERVICE_HOST = saved.host;
      process.env.KUBERNETES_SERVICE_PORT = saved.port;
      if (saved.host === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
      if (saved.port === undefined) delete process.env.KUBERNETES_SERVICE_PORT;
      await creds.remove();
    }
  });
});

describe('startControlPlane', () => {
  it("fails with the tail of the failing process's log and leaves nothing behind", async () => {
    const binDir = await mkdtemp(join(tmpdir(), 'gitops-fake-bin-'));
    try {
      for (const name of ['etcd', 'kube-apiserver', 'kube-controller-manager']) {
        await writeFile(join(binDir, name), `#!/bin/sh\necho "${name}: cannot start (flags: $1 $2)" >&2\nexit 3\n`);
        await chmod(join(binDir, name), 0o755);
      }
      const error = await startControlPlane({ binDir, handleSignals: false }).then(
        () => undefined,
        (err: unknown) => err as Error,
      );
      expect(error?.message).toMatch(
        /^etcd: exited \(code 3, signal null\) before healthy; last lines of \S+\/etcd\.log:\netcd: cannot start \(flags: --name default\)$/,
      );
      const logPath = /last lines of (\S+):/.exec(error?.message ?? '')?.[1] ?? '';
      expect(existsSync(dirname(logPath))).toBe(false);
    } finally {
      await rm(binDir, { recursive: true, force: true });
    }
  });
});
