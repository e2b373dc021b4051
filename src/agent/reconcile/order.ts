/**
 * The order stage: which objects may be applied together. Objects in one stage are independent of
 * each other (the orchestrator may apply them concurrently); a stage starts when the one before it
 * is done. Like Helm's install order and fluxcd/pkg ssa's staged apply, but coarser: what matters
 * is that definitions (Namespaces, CRDs) exist before their users, and that the accounts, roles
 * and configuration workloads reference exist before the workloads; admission webhooks go last
 * so a webhook whose backend is not there yet cannot block the rest of the commit.
 * Prune runs the stages in reverse: workloads first, Namespaces and CRDs last.
 */
import type { ResolvedObject } from './types.js';
import type { KubeObject } from '../kube/types.js';
import { groupOf } from '../../common/object-id.js';

/** Stage numbers, in apply order. */
export const Stage = {
  /** Namespaces and CustomResourceDefinitions: everything else may live in or be defined by them. */
  DEFINITIONS: 0,
  /** Cluster RBAC, classes, accounts, roles, configuration and storage that workloads reference. */
  INFRASTRUCTURE: 1,
  /** Everything else: workloads, Services, custom resources. */
  WORKLOADS: 2,
  /** Admission webhooks and aggregated APIs, once their backends have been applied. */
  WEBHOOKS: 3,
} as const;
export type StageNumber = (typeof Stage)[keyof typeof Stage];

const STAGE_OF: ReadonlyMap<string, StageNumber> = new Map<string, StageNumber>([
  ['/Namespace', Stage.DEFINITIONS],
  ['apiextensions.k8s.io/CustomResourceDefinition', Stage.DEFINITIONS],
  ['rbac.authorization.k8s.io/ClusterRole', Stage.INFRASTRUCTURE],
  ['rbac.authorization.k8s.io/ClusterRoleBinding', Stage.INFRASTRUCTURE],
  ['rbac.authorization.k8s.io/Role', Stage.INFRASTRUCTURE],
  ['rbac.authorization.k8s.io/RoleBinding', Stage.INFRASTRUCTURE],
  ['/ServiceAccount', Stage.INFRASTRUCTURE],
  ['/ConfigMap', Stage.INFRASTRUCTURE],
  ['/Secret', Stage.INFRASTRUCTURE],
  ['/ResourceQuota', Stage.INFRASTRUCTURE],
  ['/LimitRange', Stage.INFRASTRUCTURE],
  ['/PersistentVolume', Stage.INFRASTRUCTURE],
  ['/PersistentVolumeClaim', Stage.INFRASTRUCTURE],
  ['storage.k8s.io/StorageClass', Stage.INFRASTRUCTURE],
  ['scheduling.k8s.io/PriorityClass', Stage.INFRASTRUCTURE],
  ['node.k8s.io/RuntimeClass', Stage.INFRASTRUCTURE],
  ['networking.k8s.io/IngressClass', Stage.INFRASTRUCTURE],
  ['admissionregistration.k8s.io/MutatingWebhookConfiguration', Stage.WEBHOOKS],
  ['admissionregistration.k8s.io/ValidatingWebhookConfiguration', Stage.WEBHOOKS],
  ['apiregistration.k8s.io/APIService', Stage.WEBHOOKS],
]);

/** The stage of a kind in an API group (`''` for the core group). */
export function stageOf(group: string, kind: string): StageNumber {
  return STAGE_OF.get(`${group}/${kind}`) ?? Stage.WORKLOADS;
}

function stages<T>(items: readonly T[], stage: (item: T) => StageNumber): T[][] {
  const buckets: T[][] = [[], [], [], []];
  for (const item of items) buckets[stage(item)].push(item);
  return buckets.filter((b) => b.length > 0);
}

/**
 * Splits objects into apply stages, in order, dropping empty stages; input order is kept within a
 * stage. A custom resource whose CRD is in the same set lands in a later stage than the CRD (see
 * `isCustomResourceOf` for waiting until the CRD is Established).
 */
export function applyStages(objects: readonly ResolvedObject[]): ResolvedObject[][] {
  return stages(objects, (o) => stageOf(o.resource.group, o.resource.kind));
}

/** Anything prune can order: inventory entries carry group and kind. */
export interface PruneItem {
  group: string;
  kind: string;
}

/** Prune order: the apply stages reversed (workloads first, Namespaces and CRDs last), each stage reversed too. */
export function pruneOrder<T extends PruneItem>(items: readonly T[]): T[][] {
  return stages(items, (i) => stageOf(i.group, i.kind))
    .reverse()
    .map((s) => s.reverse());
}

/** The CRD in `crds` that defines obj's group and kind, if any. */
export function crdFor(obj: KubeObject, crds: readonly KubeObject[]): KubeObject | undefined {
  const group = groupOf(obj.apiVersion);
  for (const crd of crds) {
    if (crd.kind !== 'CustomResourceDefinition' || groupOf(crd.apiVersion) !== 'apiextensions.k8s.io') continue;
    const spec = crd.spec as { group?: unknown; names?: { kind?: unknown } } | undefined;
    if (spec?.group === group && spec.names?.kind === obj.kind) return crd;
  }
  return undefined;
}

/** True when obj is a custom resource defined by one of `crds` (so it must wait for that CRD). */
export function isCustomResourceOf(obj: KubeObject, crds: readonly KubeObject[]): boolean {
  return crdFor(obj, crds) !== undefined;
}
