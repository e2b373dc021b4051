/**
 * Manifests the fault tests commit: an nginx Deployment with a settings ConfigMap, and a batch of
 * numbered ConfigMaps big enough that an apply takes long enough to be interrupted.
 */

/** An nginx Deployment (`replicas`) and ConfigMap `settings` (`data.value`) in `ns`. */
export { nginxWithSettings as nginx } from '../harness/stack.js';

/** ConfigMaps `cm-<i>` for each i in `indexes`, in `ns`, as one multi-document file. */
export function configMaps(ns: string, indexes: Iterable<number>): string {
  const docs: string[] = [];
  for (const i of indexes)
    docs.push(
      `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-${String(i).padStart(4, '0')}\n  namespace: ${ns}\ndata:\n  index: "${i}"\n  payload: "${'x'.repeat(64)}"\n`,
    );
  return docs.join('---\n');
}

/** The names {@link configMaps} gives. */
export function configMapNames(indexes: Iterable<number>): string[] {
  return [...indexes].map((i) => `cm-${String(i).padStart(4, '0')}`);
}

/** 0 … n-1 */
export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}
