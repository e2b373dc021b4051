/**
 * One object's health, pure: the rules of sigs.k8s.io/cli-utils `pkg/kstatus/status` (the ones
 * GitLab's agent waited on), written for this agent. The order is kstatus' own: generic
 * properties first (deletion, `observedGeneration`, the standard `Reconciling`/`Stalled`
 * conditions), then a rule per kind (the {@link RULES} table, keyed by group/kind), then the
 * `Ready` condition, else `current` once the object exists. For workloads the caller may pass
 * their pods: a pod the kubelet cannot start or keep running makes the workload `failed` with the
 * kubelet's reason, minutes before any progress deadline.
 *
 * Pods are judged in status-pods.ts, fields read with status-read.ts.
 *
 * No I/O and no clock: `now` comes from the caller. Whatever a tenant or a controller wrote into
 * an object, nothing here throws: a field of the wrong type makes the health `unknown`, saying
 * which field. Where these rules differ from kstatus, docs/health.md says so and why.
 */
import type { KubeObject } from '../kube/types.js';
import { judgedPods, podFailure, podHealth, podHint } from './status-pods.js';
import {
  at,
  Clock,
  type Condition,
  conditionOf,
  conditionsOf,
  count,
  current,
  failed,
  inProgress,
  int,
  isRecord,
  isTrue,
  type Json,
  list,
  optionalInt,
  said,
  shown,
  str,
  UnreadableStatus,
} from './status-read.js';
import type { ObjectHealth } from './types.js';

export {
  CRASH_LOOP_RESTARTS,
  CRASH_LOOP_WINDOW_MS,
  POD_FAILURE_GRACE_MS,
  UNSCHEDULABLE_GRACE_MS,
} from './status-pods.js';

/** What the caller knows beside the object. */
export interface HealthContext {
  /** The pods that {@link podsMatter} selects for a workload (from the caller's watch cache). */
  pods?: readonly KubeObject[];
  /** The time to judge graces against, ms since epoch (default `Date.now()`). */
  now?: number;
}

/** People read messages in a table row and a log line: longer ones are clipped. */
export const MESSAGE_LIMIT = 400;
const REASON_LIMIT = 100;

/** One line (kubelet messages can hold newlines), at most `limit` characters. */
function clip(text: string, limit: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > limit ? `${line.slice(0, limit - 1)}…` : line;
}

function bounded(health: ObjectHealth): ObjectHealth {
  return {
    state: health.state,
    reason: clip(health.reason, REASON_LIMIT),
    message: clip(health.message, MESSAGE_LIMIT),
  };
}

// ---- the entry points ----

/**
 * The health of `object` as it is in the cluster (`undefined`: it is not there). For a workload
 * ({@link podsMatter}), `context.pods` are its pods: one the kubelet cannot start or keep running
 * makes the workload `failed` with the kubelet's reason and message.
 */
export function healthOf(object: KubeObject | undefined, context: HealthContext = {}): ObjectHealth {
  return judge(object, context).health;
}

/**
 * When `healthOf(object, context)` changes with no new event: the earliest end (ms since epoch,
 * after `now`) of a grace its verdict depends on, or undefined when nothing waits on the clock.
 * A status that stays the same (ErrImagePull retried with the same message, a crash-looping
 * container up again) brings no watch event, so the tracker sets one timer here instead of polling.
 */
export function recheckAt(object: KubeObject | undefined, context: HealthContext = {}): number | undefined {
  const { wakeups } = judge(object, context).clock;
  return wakeups.length > 0 ? Math.min(...wakeups) : undefined;
}

function judge(object: KubeObject | undefined, context: HealthContext): { health: ObjectHealth; clock: Clock } {
  const clock = new Clock(context.now ?? Date.now());
  if (object === undefined)
    return { health: { state: 'not_found', reason: 'NotFound', message: 'not found in the cluster' }, clock };
  try {
    return { health: bounded(evaluate(object, context.pods, clock)), clock };
  } catch (err) {
    // The tracker calls this on every watch event of every followed object: an object of a shape
    // no rule foresaw is reported as unknown (naming the field), never an exception in its loop.
    const why = err instanceof UnreadableStatus ? err.message : String(err);
    const health = { state: 'unknown', reason: 'UnreadableStatus', message: `cannot read the status: ${why}` } as const;
    // Graces met before the unreadable field do not decide this verdict: no timer for them.
    return { health: bounded(health), clock: new Clock(clock.now) };
  }
}

/**
 * Which pods explain a workload's health: for Deployment, ReplicaSet, StatefulSet, DaemonSet and
 * Job, their namespace and `spec.selector.matchLabels`; undefined for other kinds and for a
 * selector that labels alone cannot express (`matchExpressions` only, or none: that would be
 * every pod of the namespace).
 */
export function podsMatter(object: KubeObject): { namespace: string; selector: Record<string, string> } | undefined {
  try {
    if (!RULES.get(kindKey(object))?.pods) return undefined;
    const labels = at(object, 'spec.selector.matchLabels');
    if (!isRecord(labels)) return undefined;
    const entries = Object.entries(labels);
    if (entries.length === 0 || entries.some(([, v]) => typeof v !== 'string')) return undefined;
    const namespace = at(object, 'metadata.namespace');
    return {
      namespace: typeof namespace === 'string' && namespace ? namespace : 'default',
      selector: Object.fromEntries(entries) as Record<string, string>,
    };
  } catch {
    return undefined; // an unreadable object has no pods worth watching
  }
}

function kindKey(object: KubeObject): string {
  if (typeof object.apiVersion !== 'string' || typeof object.kind !== 'string')
    throw new UnreadableStatus('apiVersion and kind must be strings');
  const slash = object.apiVersion.indexOf('/');
  return slash < 0 ? object.kind : `${object.apiVersion.slice(0, slash)}/${object.kind}`;
}

function evaluate(object: KubeObject, pods: readonly KubeObject[] | undefined, clock: Clock): ObjectHealth {
  if (!isRecord(object.metadata)) throw new UnreadableStatus('metadata is not an object');
  const rule = RULES.get(kindKey(object));
  const conditions = conditionsOf(object);
  const generic = terminating(object) ?? generationLag(object) ?? standardConditions(conditions);
  if (generic) return generic;
  if (!rule) return readyCondition(conditions) ?? current('Current', 'exists; its kind reports no readiness');
  const health = rule.health(object, conditions, clock);
  // A failed workload already says why; otherwise its pods may know better: a pod that cannot
  // start while it is in progress, or one crash-looping between two back-offs while the
  // workload's counters, a moment behind, still read current.
  if (!rule.pods || !pods || (health.state !== 'in_progress' && health.state !== 'current')) return health;
  const judged = judgedPods(pods, rule.pods.revisionLabel);
  const failure = podFailure(judged, clock);
  if (failure) return failure;
  // Not failed (yet), but a person reading "0/1 replicas available" after a timeout wants to
  // know what the pod waits for: the scheduler's refusal, a pull still in its grace.
  const hint = health.state === 'in_progress' ? podHint(judged) : undefined;
  return hint ? { ...health, message: `${health.message}; ${hint}` } : health;
}

// ---- generic properties (every kind) ----

function terminating(obj: Json): ObjectHealth | undefined {
  if (!str(obj, 'metadata.deletionTimestamp')) return undefined;
  const finalizers = list(obj, 'metadata.finalizers').filter((f): f is string => typeof f === 'string');
  const message = finalizers.length
    ? `being deleted; waiting for finalizers ${finalizers.join(', ')}`
    : 'being deleted';
  return { state: 'terminating', reason: 'Terminating', message };
}

/** A controller that has not seen the newest spec has not acted on it yet: its status is stale. */
function generationLag(obj: Json): ObjectHealth | undefined {
  const generation = optionalInt(obj, 'metadata.generation');
  const observed = optionalInt(obj, 'status.observedGeneration');
  if (generation === undefined || observed === undefined || generation === observed) return undefined;
  return inProgress(
    'LatestGenerationNotObserved',
    `generation ${generation} not yet observed by its controller (observed ${observed})`,
  );
}

/**
 * kstatus' abnormal-true conditions, which any controller may write. Stalled wins over Reconciling
 * whatever their order in the list: a controller that says it gave up is the more useful news.
 */
function standardConditions(conditions: readonly Condition[]): ObjectHealth | undefined {
  const stalled = conditionOf(conditions, 'Stalled');
  if (stalled?.status === 'True')
    return failed(stalled.reason || 'Stalled', stalled.message || 'the controller stalled');
  const reconciling = conditionOf(conditions, 'Reconciling');
  if (reconciling?.status === 'True')
    return inProgress(reconciling.reason || 'Reconciling', reconciling.message || 'the controller is reconciling');
  return undefined;
}

/** The widely used (if non-standard) `Ready` condition of kinds with no rule of their own. */
function readyCondition(conditions: readonly Condition[]): ObjectHealth | undefined {
  const ready = conditionOf(conditions, 'Ready');
  if (!ready) return undefined;
  switch (ready.status) {
    case 'True':
      return current('Ready', ready.message || 'Ready');
    case 'False':
    case 'Unknown':
      return inProgress(ready.reason || 'NotReady', ready.message || `Ready is ${ready.status}`);
    default:
      throw new UnreadableStatus(`condition Ready has status ${shown(ready.status)}`);
  }
}

// ---- a rule per kind ----

type KindHealth = (obj: Json, conditions: readonly Condition[], clock: Clock) => ObjectHealth;

interface KindRule {
  health: KindHealth;
  /**
   * Its pods can say why it does not progress (see {@link podsMatter}); `revisionLabel` is the
   * pod label naming the template revision a pod was made from, to tell a rollout's new pods from
   * the old ones.
   */
  pods?: { revisionLabel?: string };
}

/** `spec.progressDeadlineSeconds` meaning "none": the controller then never sets Progressing's outcome. */
const NO_DEADLINE = 2147483647;

function deploymentHealth(obj: Json, conditions: readonly Condition[]): ObjectHealth {
  const progressing = conditionOf(conditions, 'Progressing');
  if (progressing?.reason === 'ProgressDeadlineExceeded')
    return failed('ProgressDeadlineExceeded', progressing.message || 'progress deadline exceeded');
  const want = int(obj, 'spec.replicas', 1);
  const replicas = int(obj, 'status.replicas', 0);
  const updated = int(obj, 'status.updatedReplicas', 0);
  const ready = int(obj, 'status.readyReplicas', 0);
  const available = int(obj, 'status.availableReplicas', 0);
  if (replicas < want) return missingReplicas(conditions, `${replicas}/${want} replicas created`);
  if (updated < want) return inProgress('LessUpdated', `${updated}/${want} replicas updated`);
  if (replicas > want) return inProgress('ExtraPods', `${count(replicas - want, 'old replica')} pending termination`);
  if (available < updated) return inProgress('LessAvailable', `${available}/${want} replicas available`);
  if (ready < want) return inProgress('LessReady', `${ready}/${want} replicas ready`);
  const deadline = int(obj, 'spec.progressDeadlineSeconds', NO_DEADLINE);
  const rolledOut = progressing?.status === 'True' && progressing.reason === 'NewReplicaSetAvailable';
  if (deadline !== NO_DEADLINE && !rolledOut)
    return inProgress('ReplicaSetNotAvailable', 'waiting for the new ReplicaSet to become available');
  if (!isTrue(conditions, 'Available')) return inProgress('DeploymentNotAvailable', 'waiting for Available');
  return current('Available', `${available}/${want} replicas available`);
}

/**
 * Too few pods exist. kstatus waits (a quota can be raised), but when the controller says why it
 * cannot create them (`ReplicaFailure`: quota, admission) that is what a person needs to read.
 */
function missingReplicas(conditions: readonly Condition[], counts: string): ObjectHealth {
  const failure = conditionOf(conditions, 'ReplicaFailure');
  if (failure?.status !== 'True') return inProgress('LessReplicas', counts);
  return inProgress('ReplicaFailure', `${counts}; ${said(failure.reason, failure.message)}`);
}

function replicaSetHealth(obj: Json, conditions: readonly Condition[]): ObjectHealth {
  const want = int(obj, 'spec.replicas', 1);
  const replicas = int(obj, 'status.replicas', 0);
  const labelled = int(obj, 'status.fullyLabeledReplicas', 0);
  const ready = int(obj, 'status.readyReplicas', 0);
  const available = int(obj, 'status.availableReplicas', 0);
  if (replicas < want || isTrue(conditions, 'ReplicaFailure'))
    return missingReplicas(conditions, `${replicas}/${want} replicas created`);
  if (labelled < want) return inProgress('LessLabelled', `${labelled}/${want} replicas labelled`);
  if (available < want) return inProgress('LessAvailable', `${available}/${want} replicas available`);
  if (ready < want) return inProgress('LessReady', `${ready}/${want} replicas ready`);
  if (replicas > want) return inProgress('ExtraPods', `${count(replicas - want, 'replica')} pending termination`);
  return current('Available', `${available}/${want} replicas available`);
}

function statefulSetHealth(obj: Json): ObjectHealth {
  const want = int(obj, 'spec.replicas', 1);
  const replicas = int(obj, 'status.replicas', 0);
  const ready = int(obj, 'status.readyReplicas', 0);
  const updated = int(obj, 'status.updatedReplicas', 0);
  if (replicas < want) return inProgress('LessReplicas', `${replicas}/${want} replicas created`);
  if (ready < want) return inProgress('LessReady', `${ready}/${want} replicas ready`);
  if (replicas > want) return inProgress('ExtraPods', `${count(replicas - want, 'replica')} pending termination`);
  // OnDelete: the user replaces pods by hand, so the controller's revisions never converge by
  // themselves; kstatus calls such a set current at once, here its pods must at least be ready.
  if (str(obj, 'spec.updateStrategy.type') === 'OnDelete')
    return current('Ready', `${ready}/${want} replicas ready (updates on delete)`);
  const revision = str(obj, 'status.updateRevision');
  const rolledOut = str(obj, 'status.currentRevision') === revision;
  // A partition keeps the ordinals below it at the old revision on purpose: such a rollout is
  // done once every ordinal from the partition up is updated.
  const partition = int(obj, 'spec.updateStrategy.rollingUpdate.partition', 0);
  if (partition > 0 && !rolledOut) {
    const due = Math.max(0, want - partition);
    const counts = `${updated}/${due} replicas updated (partition ${partition})`;
    return updated < due ? inProgress('PartitionRollout', counts) : current('PartitionRolledOut', counts);
  }
  if (updated < want) return inProgress('LessUpdated', `${updated}/${want} replicas updated`);
  if (!rolledOut) return inProgress('RevisionMismatch', `rolling out revision ${revision}`);
  return current('Ready', `${ready}/${want} replicas ready`);
}

function daemonSetHealth(obj: Json): ObjectHealth {
  // The generic check skips an absent observedGeneration; a DaemonSet controller always writes it,
  // so its absence means the controller has not looked yet.
  if (optionalInt(obj, 'status.observedGeneration') === undefined)
    return inProgress('NoObservedGeneration', 'not yet observed by the DaemonSet controller');
  const desired = optionalInt(obj, 'status.desiredNumberScheduled');
  if (desired === undefined) return inProgress('NoDesiredNumber', 'the controller has not counted the nodes yet');
  const scheduled = int(obj, 'status.currentNumberScheduled', 0);
  const updated = int(obj, 'status.updatedNumberScheduled', 0);
  const available = int(obj, 'status.numberAvailable', 0);
  const ready = int(obj, 'status.numberReady', 0);
  const misscheduled = int(obj, 'status.numberMisscheduled', 0);
  if (scheduled < desired) return inProgress('LessCurrent', `${scheduled}/${desired} pods scheduled`);
  // As for a StatefulSet, OnDelete pods are updated by hand, so an old revision is not a rollout.
  const onDelete = str(obj, 'spec.updateStrategy.type') === 'OnDelete';
  if (!onDelete && updated < desired) return inProgress('LessUpdated', `${updated}/${desired} pods updated`);
  if (available < desired) return inProgress('LessAvailable', `${available}/${desired} pods available`);
  if (ready < desired) return inProgress('LessReady', `${ready}/${desired} pods ready`);
  if (misscheduled > 0) return inProgress('Misscheduled', `${count(misscheduled, 'misscheduled pod')} still running`);
  return current('Available', `${available}/${desired} pods available`);
}

/**
 * A Job is current only once it completed (kstatus calls a started Job current): a commit that
 * ships a Job is healthy when the Job did its work, and degraded when it failed.
 */
function jobHealth(obj: Json, conditions: readonly Condition[]): ObjectHealth {
  const succeeded = int(obj, 'status.succeeded', 0);
  const active = int(obj, 'status.active', 0);
  const failures = int(obj, 'status.failed', 0);
  const completions = optionalInt(obj, 'spec.completions');
  const done = completions === undefined ? `${succeeded}` : `${succeeded}/${completions}`;
  // FailureTarget is the controller's verdict before it has stopped the pods and written Failed.
  const failure = [conditionOf(conditions, 'Failed'), conditionOf(conditions, 'FailureTarget')].find(
    (c) => c?.status === 'True',
  );
  if (failure) return failed(failure.reason || 'JobFailed', `Job failed: ${said(failure.reason, failure.message)}`);
  if (isTrue(conditions, 'Complete')) return current('Complete', `Job completed: ${done} succeeded`);
  if (isTrue(conditions, 'Suspended') && at(obj, 'spec.suspend') === true)
    return current('Suspended', 'Job is suspended');
  if (!str(obj, 'status.startTime')) return inProgress('JobNotStarted', 'Job not started yet');
  return inProgress('JobRunning', `${active} active, ${done} succeeded, ${failures} failed`);
}

function pvcHealth(obj: Json): ObjectHealth {
  const phase = str(obj, 'status.phase');
  if (phase === 'Bound') return current('Bound', `bound to ${str(obj, 'spec.volumeName') || 'a volume'}`);
  // Lost: the bound volume is gone; no controller brings it back.
  if (phase === 'Lost') return failed('ClaimLost', 'the bound volume no longer exists');
  return inProgress('NotBound', `${phase || 'no phase yet'}: not bound to a volume`);
}

function serviceHealth(obj: Json): ObjectHealth {
  const type = str(obj, 'spec.type') || 'ClusterIP';
  if (type !== 'LoadBalancer') return current('Ready', `type ${type}`);
  const addresses = list(obj, 'status.loadBalancer.ingress').flatMap((entry) => {
    const address = isRecord(entry) ? (entry.ip ?? entry.hostname) : undefined;
    return typeof address === 'string' && address ? [address] : [];
  });
  if (addresses.length === 0) return inProgress('NoIngress', 'waiting for the load balancer to get an address');
  return current('LoadBalancerReady', `load balancer at ${addresses.join(', ')}`);
}

function crdHealth(obj: Json, conditions: readonly Condition[]): ObjectHealth {
  const names = conditionOf(conditions, 'NamesAccepted');
  if (names?.status === 'False')
    return failed(names.reason || 'NamesNotAccepted', names.message || 'names not accepted');
  const established = conditionOf(conditions, 'Established');
  if (established?.status === 'True')
    return current('Established', `established: ${str(obj, 'spec.names.plural')}.${str(obj, 'spec.group')}`);
  // Installing is the API server's normal first step; any other reason for False is a refusal.
  if (established?.status === 'False' && established.reason !== 'Installing')
    return failed(established.reason || 'NotEstablished', established.message || 'not established');
  return inProgress('Installing', 'waiting for the API server to establish it');
}

function pdbHealth(obj: Json): ObjectHealth {
  // The disruption controller writes observedGeneration with its first count: before that the
  // numbers below are not computed yet.
  if (optionalInt(obj, 'status.observedGeneration') === undefined)
    return inProgress('NoObservedGeneration', 'not yet observed by the disruption controller');
  const healthy = int(obj, 'status.currentHealthy', 0);
  const desired = int(obj, 'status.desiredHealthy', 0);
  const counts = `${count(healthy, 'healthy pod')}, ${desired} required`;
  return healthy >= desired ? current('SufficientPods', counts) : inProgress('InsufficientPods', counts);
}

function namespaceHealth(obj: Json): ObjectHealth {
  const phase = str(obj, 'status.phase');
  if (phase === 'Active') return current('Active', 'active');
  if (phase === 'Terminating') return { state: 'terminating', reason: 'Terminating', message: 'being deleted' };
  return inProgress('NotActive', `phase ${phase || 'not reported yet'}`);
}

/** The rule per kind, keyed as kstatus keys them: `group/Kind`, the bare Kind for the core group. */
const RULES: ReadonlyMap<string, KindRule> = new Map<string, KindRule>([
  ['apps/Deployment', { health: deploymentHealth, pods: { revisionLabel: 'pod-template-hash' } }],
  ['apps/ReplicaSet', { health: replicaSetHealth, pods: {} }],
  ['apps/StatefulSet', { health: statefulSetHealth, pods: { revisionLabel: 'controller-revision-hash' } }],
  ['apps/DaemonSet', { health: daemonSetHealth, pods: { revisionLabel: 'controller-revision-hash' } }],
  ['batch/Job', { health: jobHealth, pods: {} }],
  ['Pod', { health: podHealth }],
  ['PersistentVolumeClaim', { health: pvcHealth }],
  ['Service', { health: serviceHealth }],
  ['apiextensions.k8s.io/CustomResourceDefinition', { health: crdHealth }],
  ['policy/PodDisruptionBudget', { health: pdbHealth }],
  ['Namespace', { health: namespaceHealth }],
]);
