/**
 * The health tests' custom resource type, installed the way a cluster operator installs an
 * operator's CRD beside the agent: the CRD itself by an admin (manifests/agent's ClusterRole has no
 * rights on CRDs, on purpose), and a ClusterRole bound to the agent's ServiceAccount for the new
 * kind, as manifests/README.md ("More kinds") tells users to add. Git then holds only the custom
 * resources. `uninstall()` deletes all three (they are cluster-scoped: the test namespace's
 * deletion would leave them).
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { kubeRequest } from '../../harness/kube.js';
import { waitFor } from '../../harness/wait.js';
import { widgetCrd, type WidgetType } from './manifests.js';

export interface InstalledType {
  uninstall(): Promise<void>;
}

const RBAC = '/apis/rbac.authorization.k8s.io/v1';
const CRDS = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';

async function apply(kc: KubeConfig, path: string, body: unknown): Promise<void> {
  const res = await kubeRequest(
    kc,
    'PATCH',
    `${path}?fieldManager=gitops-e2e&force=true`,
    body,
    'application/apply-patch+yaml',
  );
  if (res.status >= 300) throw new Error(`apply ${path}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
}

/** Installs `t` for the agent of ServiceAccount `agentNamespace/gitops-agent`; resolves once the CRD is Established. */
export async function installWidgetType(kc: KubeConfig, t: WidgetType, agentNamespace: string): Promise<InstalledType> {
  const crdName = `${t.plural}.${t.group}`;
  const roleName = `gitops-agent-${t.plural}-${t.group}`;
  const paths = [`${RBAC}/clusterrolebindings/${roleName}`, `${RBAC}/clusterroles/${roleName}`, `${CRDS}/${crdName}`];
  const uninstall = async (): Promise<void> => {
    for (const p of paths) await kubeRequest(kc, 'DELETE', p).catch(() => undefined);
  };
  try {
    await apply(kc, `${CRDS}/${crdName}`, parseYaml(widgetCrd(t)));
    await apply(kc, `${RBAC}/clusterroles/${roleName}`, {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: roleName },
      rules: [
        {
          apiGroups: [t.group],
          resources: [t.plural],
          verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
        },
      ],
    });
    await apply(kc, `${RBAC}/clusterrolebindings/${roleName}`, {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: roleName },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: roleName },
      subjects: [{ kind: 'ServiceAccount', name: 'gitops-agent', namespace: agentNamespace }],
    });
    await waitFor(
      async () => {
        const res = await kubeRequest(kc, 'GET', `${CRDS}/${crdName}`);
        const conditions = (res.body as { status?: { conditions?: Array<{ type: string; status: string }> } }).status
          ?.conditions;
        return conditions?.some((c) => c.type === 'Established' && c.status === 'True');
      },
      30_000,
      `CRD ${crdName} Established`,
    );
  } catch (err) {
    await uninstall();
    throw err;
  }
  return { uninstall };
}
