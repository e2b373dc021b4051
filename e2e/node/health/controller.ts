/**
 * A tiny controller for the health tests' custom resource, run by the test process: it watches
 * the resources of one type in one namespace and, for each generation it has not yet observed,
 * writes at once `Reconciling=True`/`Ready=False` (with `status.observedGeneration` the new
 * generation), then after `delayMs` `Ready=True`. That is what a real operator's status looks like
 * while it works, so the agent must report such a resource progressing until Ready, and healthy
 * after. Status goes through the status subresource, which the agent's apply never owns.
 *
 * The watch starts before the CRD exists (the commit brings it): a failed or ended watch is started
 * again after a short pause until `stop()`. Failed status writes are kept in `errors` for the test
 * to assert on, never thrown into the watch callback.
 */
import { Watch, type KubeConfig } from '@kubernetes/client-node';
import { kubeRequest } from '../../harness/kube.js';
import type { WidgetType } from './manifests.js';

/** Pause before watching again after a watch failed (the CRD not yet served) or ended. */
const REWATCH_MS = 200;

export interface ConditionController {
  /** Status writes that failed, for the test to assert on. */
  readonly errors: readonly string[];
  /** Generations marked Ready, as `name@generation`. */
  readonly readied: readonly string[];
  stop(): Promise<void>;
}

interface WatchedObject {
  metadata?: { name?: string; generation?: number };
  status?: { observedGeneration?: number };
}

type Condition = { type: string; status: 'True' | 'False'; reason: string; message: string };

function conditions(ready: boolean, generation: number): Condition[] {
  return ready
    ? [
        { type: 'Ready', status: 'True', reason: 'Reconciled', message: `generation ${generation} is ready` },
        { type: 'Reconciling', status: 'False', reason: 'Reconciled', message: 'done' },
      ]
    : [
        { type: 'Ready', status: 'False', reason: 'Progressing', message: `working on generation ${generation}` },
        { type: 'Reconciling', status: 'True', reason: 'Progressing', message: `working on generation ${generation}` },
      ];
}

export function startConditionController(
  kc: KubeConfig,
  t: WidgetType,
  namespace: string,
  delayMs: number,
): ConditionController {
  const base = `/apis/${t.group}/${t.version}/namespaces/${namespace}/${t.plural}`;
  const errors: string[] = [];
  const readied: string[] = [];
  const started = new Set<string>();
  const timers = new Set<NodeJS.Timeout>();
  const writes = new Set<Promise<void>>();
  let stopped = false;
  let current: AbortController | undefined;
  let rewatch: NodeJS.Timeout | undefined;

  const writeStatus = (name: string, generation: number, ready: boolean): void => {
    const lastTransitionTime = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const body = {
      status: {
        observedGeneration: generation,
        conditions: conditions(ready, generation).map((c) => ({ ...c, lastTransitionTime })),
      },
    };
    const write = kubeRequest(
      kc,
      'PATCH',
      `${base}/${name}/status?fieldManager=health-test-controller`,
      body,
      'application/merge-patch+json',
    )
      .then((res) => {
        if (res.status !== 200) errors.push(`${name}@${generation}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
        else if (ready) readied.push(`${name}@${generation}`);
      })
      .catch((err: unknown) => void errors.push(`${name}@${generation}: ${(err as Error).message}`))
      .finally(() => writes.delete(write));
    writes.add(write);
  };

  const onEvent = (phase: string, obj: WatchedObject): void => {
    const name = obj.metadata?.name;
    const generation = obj.metadata?.generation;
    if (stopped || !name || generation === undefined || (phase !== 'ADDED' && phase !== 'MODIFIED')) return;
    const key = `${name}@${generation}`;
    if (started.has(key)) return;
    started.add(key);
    writeStatus(name, generation, false);
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!stopped) writeStatus(name, generation, true);
    }, delayMs);
    timers.add(timer);
  };

  const watch = (): void => {
    if (stopped) return;
    // The done callback and a rejected start may both report one failed attempt: retry once.
    let ended = false;
    const again = (): void => {
      if (ended) return;
      ended = true;
      current = undefined;
      if (!stopped) rewatch = setTimeout(watch, REWATCH_MS);
    };
    new Watch(kc)
      .watch(base, {}, (phase, obj) => onEvent(phase, obj as WatchedObject), again)
      .then((ctl) => {
        current = ctl;
        if (stopped) ctl.abort();
      })
      .catch(again);
  };
  watch();

  return {
    errors,
    readied,
    async stop() {
      stopped = true;
      clearTimeout(rewatch);
      for (const timer of timers) clearTimeout(timer);
      current?.abort();
      await Promise.all([...writes]);
    },
  };
}
