/**
 * Pods as a user sees them with `kubectl get pods`, for the tests and the demo that run on a real
 * node (e2e/harness/node.ts): which pods are Running and Ready, which are still terminating, and a
 * table with kubectl's columns (NAME, READY, STATUS, RESTARTS, AGE). The status column follows
 * kubectl's rules for the cases a test meets: `Terminating` once a deletion is asked for, a
 * container's waiting or terminated reason (`ContainerCreating`, `CrashLoopBackOff`, `Completed`)
 * before the pod's phase.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { kubeRequest } from './kube.js';
import { waitFor } from './wait.js';

/** The parts of a Pod read here. */
export interface PodLike {
  metadata: {
    name: string;
    uid?: string;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    ownerReferences?: Array<{ kind: string; name: string; uid: string }>;
  };
  spec?: { containers?: Array<{ name: string }> };
  status?: {
    phase?: string;
    conditions?: Array<{ type: string; status: string; lastTransitionTime?: string }>;
    containerStatuses?: Array<{
      name: string;
      ready: boolean;
      restartCount: number;
      state?: { waiting?: { reason?: string }; running?: object; terminated?: { reason?: string } };
    }>;
  };
}

export interface PodRow {
  name: string;
  ready: string;
  status: string;
  restarts: number;
  age: string;
}

/** Running, its Ready condition true, and no deletion asked for: what "pods Ready" counts. */
export function isReady(pod: PodLike): boolean {
  return (
    !pod.metadata.deletionTimestamp &&
    pod.status?.phase === 'Running' &&
    pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true
  );
}

/**
 * When the last of `pods` turned Ready (ms since the epoch, whole seconds as the API server keeps
 * them), or undefined unless every one is Ready: what "all pods Ready at" means for a rollout.
 */
export function allReadySince(pods: readonly PodLike[]): number | undefined {
  if (pods.length === 0 || !pods.every(isReady)) return undefined;
  const times = pods.map((p) =>
    Date.parse(p.status?.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime ?? ''),
  );
  return times.some(Number.isNaN) ? undefined : Math.max(...times);
}

/** kubectl's short age: `42s`, `3m5s`, `2h10m`. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

/** The STATUS column (see the module comment). */
export function podStatus(pod: PodLike): string {
  if (pod.metadata.deletionTimestamp) return 'Terminating';
  for (const c of pod.status?.containerStatuses ?? []) {
    const reason = c.state?.waiting?.reason ?? c.state?.terminated?.reason;
    if (reason) return reason;
  }
  return pod.status?.phase ?? 'Unknown';
}

/** One row per pod, sorted by name as kubectl sorts them; `now` in ms since the epoch. */
export function podRows(pods: readonly PodLike[], now: number): PodRow[] {
  return [...pods]
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
    .map((pod) => {
      const statuses = pod.status?.containerStatuses ?? [];
      const total = pod.spec?.containers?.length ?? statuses.length;
      const created = pod.metadata.creationTimestamp ? Date.parse(pod.metadata.creationTimestamp) : now;
      return {
        name: pod.metadata.name,
        ready: `${statuses.filter((c) => c.ready).length}/${total}`,
        status: podStatus(pod),
        restarts: statuses.reduce((n, c) => n + c.restartCount, 0),
        age: formatAge(now - created),
      };
    });
}

/** The rows as `kubectl get pods` prints them (columns padded to the widest cell, 3 spaces apart). */
export function formatPodTable(rows: readonly PodRow[]): string {
  if (rows.length === 0) return 'No resources found.';
  const cells = [
    ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE'],
    ...rows.map((r) => [r.name, r.ready, r.status, String(r.restarts), r.age]),
  ];
  const widths = cells[0].map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  return cells
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] + 3))).join(''))
    .join('\n');
}

/** The pods of `namespace` matching the label selector (`app=nginx`). */
export async function listPods(kc: KubeConfig, namespace: string, selector: string): Promise<PodLike[]> {
  const res = await kubeRequest(
    kc,
    'GET',
    `/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(selector)}`,
  );
  if (res.status !== 200)
    throw new Error(
      `listing pods ${selector} in ${namespace}: HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`,
    );
  return (res.body as { items: PodLike[] }).items;
}

/** A summary of what the pods are doing, for "waited for ..." messages: `2 Ready, 1 ContainerCreating`. */
export function podSummary(pods: readonly PodLike[]): string {
  if (pods.length === 0) return 'no pods';
  const counts = new Map<string, number>();
  for (const p of pods) {
    const key = isReady(p) ? 'Ready' : podStatus(p);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${n} ${k}`).join(', ');
}

/**
 * Waits until the pods matching `selector` are exactly `n`, every one Running and Ready (so none
 * still terminating) and none named in `notNamed` (pods that must be replaced, e.g. those of a
 * deleted Deployment, which stay listed until garbage collection reaches them), polling every
 * 50 ms; resolves to them. A timeout names what the pods were doing.
 */
export async function waitForReadyPods(
  kc: KubeConfig,
  namespace: string,
  selector: string,
  n: number,
  timeoutMs: number,
  notNamed: readonly string[] = [],
): Promise<PodLike[]> {
  let last: PodLike[] = [];
  try {
    return await waitFor(
      async () => {
        last = await listPods(kc, namespace, selector);
        const settled = last.length === n && last.every((p) => isReady(p) && !notNamed.includes(p.metadata.name));
        return settled ? last : undefined;
      },
      timeoutMs,
      `${n} pods ${selector} Running and Ready${notNamed.length ? `, none of ${notNamed.join(', ')}` : ''}`,
      50,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; the pods: ${podSummary(last)}`);
  }
}
