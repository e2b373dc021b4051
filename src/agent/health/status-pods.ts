/**
 * The pods' part of health (status.ts has the rest): a bare Pod's rule, and what a workload's pods
 * say about it. A container the kubelet cannot start (ImagePullBackOff, ErrImageNeverPull,
 * CreateContainerConfigError, with a grace for the reasons the kubelet retries) or keep running
 * (CrashLoopBackOff, also between two back-offs) makes the workload `failed` with the kubelet's own
 * reason and message; during a rollout only the newest revision's pods count.
 */
import type { KubeObject } from '../kube/types.js';
import type { ObjectHealth } from './types.js';
import {
  at,
  type Clock,
  type Condition,
  conditionOf,
  conditionsOf,
  current,
  failed,
  inProgress,
  int,
  isRecord,
  type Json,
  list,
  readable,
  said,
  shown,
  str,
  timeAt,
  UnreadableStatus,
} from './status-read.js';

/**
 * The kubelet retries a failed image pull (and the creation of a container whose ConfigMap or
 * Secret is missing): within this long of the pod's creation, or of the container's last exit,
 * such a reason is taken as transient (a registry blip, a Secret a controller is about to write).
 */
export const POD_FAILURE_GRACE_MS = 10_000;

/** kstatus' window for a bare Pod the scheduler cannot place (a node may be on its way). */
export const UNSCHEDULABLE_GRACE_MS = 15_000;

/** Restarts after which a container that keeps exiting is crash-looping even between back-offs. */
export const CRASH_LOOP_RESTARTS = 3;

/**
 * How long such a container must stay up to count as recovered. A loop's runs can last any time;
 * five minutes (the kubelet's longest back-off) covers the usual ones, and a real recovery is
 * reported after that wait, by the timer that `recheckAt` (status.ts) gives.
 */
export const CRASH_LOOP_WINDOW_MS = 5 * 60_000;

/** Waiting reasons that mean the kubelet cannot start a container; `true` marks those given a grace. */
const FAILING_WAITING_REASONS: ReadonlyMap<string, boolean> = new Map([
  // The kubelet only says CrashLoopBackOff after the container has exited: it already retried.
  ['CrashLoopBackOff', false],
  ['ErrImagePull', true],
  ['ImagePullBackOff', true],
  // Pull policy Never: the kubelet will not pull, so waiting cannot help.
  ['ErrImageNeverPull', false],
  // A malformed reference stays malformed.
  ['InvalidImageName', false],
  ['CreateContainerConfigError', true],
  ['CreateContainerError', true],
]);

/** A Pod applied on its own: its phase, its containers, and for a pending one the scheduler. */
export function podHealth(pod: Json, conditions: readonly Condition[], clock: Clock): ObjectHealth {
  const phase = str(pod, 'status.phase');
  if (phase === 'Succeeded') return current('PodSucceeded', 'completed');
  if (phase === 'Failed') return podFailed(pod);
  if (phase === 'Unknown')
    return { state: 'unknown', reason: 'PodPhaseUnknown', message: 'its node stopped reporting' };
  if (phase !== 'Running' && phase !== 'Pending' && phase !== '')
    throw new UnreadableStatus(`status.phase is ${shown(phase)}, not a pod phase`);
  const problem = containerProblem(pod, clock);
  if (problem) return failed(problem.reason, problem.message);
  const ready = conditionOf(conditions, 'Ready');
  if (phase === 'Running' && ready?.status === 'True') return current('Ready', 'running and ready');
  if (phase === 'Running')
    return inProgress('PodRunningNotReady', `running, not ready${ready?.message ? `: ${ready.message}` : ''}`);
  if (phase === 'Pending') return unscheduled(pod, conditions, clock) ?? inProgress('PodPending', pendingWhy(pod));
  return inProgress('PodNotObserved', 'not yet seen by a kubelet');
}

/**
 * A pod that ran to phase Failed (restart policy Never or OnFailure out of retries, evicted).
 * kstatus calls it current, "completed"; a Pod applied on its own that failed is what the
 * person who shipped it needs to hear about, so here it is failed.
 */
function podFailed(pod: Json): ObjectHealth {
  const reason = str(pod, 'status.reason');
  const message = str(pod, 'status.message');
  if (reason || message) return failed(reason || 'PodFailed', said(reason, message));
  for (const cs of containerStatuses(pod)) {
    const exit = at(cs, 'state.terminated');
    if (isRecord(exit) && exit.exitCode !== 0)
      return failed('PodFailed', `container ${str(cs, 'name')}: ${exitOf(exit)}`);
  }
  return failed('PodFailed', 'the pod failed');
}

function unscheduled(pod: Json, conditions: readonly Condition[], clock: Clock): ObjectHealth | undefined {
  const scheduled = conditionOf(conditions, 'PodScheduled');
  if (scheduled?.status !== 'False' || scheduled.reason !== 'Unschedulable') return undefined;
  const message = scheduled.message || 'no node can take it';
  const created = timeAt(pod, 'metadata.creationTimestamp');
  if (created !== undefined && clock.before(created + UNSCHEDULABLE_GRACE_MS))
    return inProgress('PodNotScheduled', message);
  return failed('PodUnschedulable', message);
}

/** What a pending pod waits for, from its first waiting container (`ContainerCreating`, a pull). */
function pendingWhy(pod: Json): string {
  for (const cs of containerStatuses(pod)) {
    const reason = str(cs, 'state.waiting.reason');
    if (reason) return `container ${str(cs, 'name')}: ${said(reason, str(cs, 'state.waiting.message'))}`;
  }
  return 'pending';
}

function containerStatuses(pod: Json): Json[] {
  // Init containers run first: when one cannot start, that is the reason the others wait.
  return [...list(pod, 'status.initContainerStatuses'), ...list(pod, 'status.containerStatuses')].filter(isRecord);
}

interface Problem {
  reason: string;
  message: string;
}

/** The first container of `pod` the kubelet cannot start or keep running, graces considered. */
function containerProblem(pod: Json, clock: Clock): Problem | undefined {
  const created = timeAt(pod, 'metadata.creationTimestamp');
  for (const cs of containerStatuses(pod)) {
    const problem = waitingProblem(cs, created, clock) ?? crashLoop(cs, clock);
    if (problem) return { reason: problem.reason, message: `container ${str(cs, 'name')}: ${problem.message}` };
  }
  return undefined;
}

function waitingProblem(cs: Json, created: number | undefined, clock: Clock): Problem | undefined {
  const reason = str(cs, 'state.waiting.reason');
  const graced = FAILING_WAITING_REASONS.get(reason);
  if (graced === undefined) return undefined;
  const since = graceStart(cs, created);
  if (graced && since !== undefined && clock.before(since + POD_FAILURE_GRACE_MS)) return undefined;
  // The kubelet's back-off message does not say why the container exited; its last state does.
  const exit = at(cs, 'lastState.terminated');
  const last = reason === 'CrashLoopBackOff' && isRecord(exit) ? `last ${exitOf(exit)}` : '';
  return { reason, message: said(reason, [last, str(cs, 'state.waiting.message')].filter(Boolean).join('; ')) };
}

/**
 * The grace runs from the later of the pod's creation and the container's last exit (a restart
 * pulls again under `imagePullPolicy: Always`). A waiting state carries no time of its own.
 */
function graceStart(cs: Json, created: number | undefined): number | undefined {
  const times = [created, timeAt(cs, 'lastState.terminated.finishedAt')].filter((t) => t !== undefined);
  return times.length > 0 ? Math.max(...times) : undefined;
}

/**
 * Between two back-offs a crash-looping container is not waiting with CrashLoopBackOff: it has
 * just exited, or it runs again, and with no readiness probe it even reads ready. Once it has
 * exited with an error {@link CRASH_LOOP_RESTARTS} times it counts as crash-looping all the same
 * until it has stayed up for {@link CRASH_LOOP_WINDOW_MS}, ready or not, so that the health does
 * not flip to current and back with every restart.
 */
function crashLoop(cs: Json, clock: Clock): Problem | undefined {
  const restarts = int(cs, 'restartCount', 0);
  if (restarts < CRASH_LOOP_RESTARTS) return undefined;
  const exit = [at(cs, 'state.terminated'), at(cs, 'lastState.terminated')].find(isRecord);
  if (!exit || exit.exitCode === 0) return undefined;
  if (isRecord(at(cs, 'state.running'))) {
    // Up for the window since the last crash: out of the loop (unready then is a readiness
    // matter, reported as such). Up since a time not known: only readiness can tell.
    const upSince = timeAt(cs, 'state.running.startedAt');
    const recovered = upSince === undefined ? cs.ready === true : !clock.before(upSince + CRASH_LOOP_WINDOW_MS);
    if (recovered) return undefined;
  }
  return { reason: 'CrashLoopBackOff', message: `CrashLoopBackOff: restarted ${restarts} times, last ${exitOf(exit)}` };
}

function exitOf(terminated: Json): string {
  const code = typeof terminated.exitCode === 'number' ? ` (exit code ${terminated.exitCode})` : '';
  const reason = typeof terminated.reason === 'string' && terminated.reason ? terminated.reason : 'exited';
  return `${reason}${code}`;
}

/**
 * The pods that speak for their workload, by name (the same pods give the same answer): not
 * being deleted, not finished (an evicted pod is replaced), and during a rollout only those of
 * the newest revision: the old ones may be the very crash loop that the new commit fixes.
 */
export function judgedPods(pods: readonly KubeObject[], revisionLabel: string | undefined): Json[] {
  const live = pods.filter(
    (pod) =>
      isRecord(pod) &&
      isRecord(pod.metadata) &&
      !pod.metadata.deletionTimestamp &&
      !(isRecord(pod.status) && ['Succeeded', 'Failed'].includes(String(pod.status.phase))),
  );
  const newest = revisionLabel ? newestRevision(live, revisionLabel) : live;
  const name = (pod: KubeObject): string => String(pod.metadata.name);
  return newest.sort((a, b) => name(a).localeCompare(name(b)));
}

/**
 * The pods of the revision whose pod was created last: the rollout's target (a rollback's too,
 * since its pods are the new ones). Revisions tied on that second are all kept. A pod without the
 * label was not made by this kind's controller (another workload's, matching the same labels).
 */
function newestRevision(pods: readonly KubeObject[], label: string): KubeObject[] {
  const revision = (pod: KubeObject): unknown =>
    isRecord(pod.metadata.labels) ? pod.metadata.labels[label] : undefined;
  const made = pods.filter((pod) => typeof revision(pod) === 'string');
  const created = (pod: KubeObject): number => readable(() => timeAt(pod, 'metadata.creationTimestamp')) ?? 0;
  const latest = Math.max(...made.map(created));
  const newest = new Set(made.filter((pod) => created(pod) === latest).map(revision));
  return made.filter((pod) => newest.has(revision(pod)));
}

/**
 * The first of a workload's pods that the kubelet cannot start or keep running. A pod too odd to
 * read is skipped: it cannot explain anything.
 */
export function podFailure(pods: readonly Json[], clock: Clock): ObjectHealth | undefined {
  for (const pod of pods) {
    const problem = readable(() => containerProblem(pod, clock));
    if (problem) return failed(problem.reason, `pod ${String(at(pod, 'metadata.name'))}: ${problem.message}`);
  }
  return undefined;
}

/** What the first pod held back by a likely problem waits for; undefined when none is. */
export function podHint(pods: readonly Json[]): string | undefined {
  for (const pod of pods) {
    const hint = readable(() => podWaitsFor(pod));
    if (hint) return `pod ${String(at(pod, 'metadata.name'))}: ${hint}`;
  }
  return undefined;
}

function podWaitsFor(pod: Json): string | undefined {
  const scheduled = conditionOf(conditionsOf(pod), 'PodScheduled');
  if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable')
    return said('Unschedulable', scheduled.message);
  const cs = containerStatuses(pod).find((c) => FAILING_WAITING_REASONS.has(str(c, 'state.waiting.reason')));
  return (
    cs && `container ${str(cs, 'name')}: ${said(str(cs, 'state.waiting.reason'), str(cs, 'state.waiting.message'))}`
  );
}
