import { describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { KubeObject } from '../kube/types.js';
import type { HealthState } from '../../protocol/vocabulary.js';
import {
  CRASH_LOOP_WINDOW_MS,
  healthOf,
  MESSAGE_LIMIT,
  POD_FAILURE_GRACE_MS,
  podsMatter,
  recheckAt,
  UNSCHEDULABLE_GRACE_MS,
} from './status.js';

// ---- objects captured from a real node (e2e/node/capture-health-fixtures.ts) ----

const TESTDATA = fileURLToPath(new URL('./testdata/', import.meta.url));

interface Fixture {
  /** When it was captured: the `now` it is judged at, so graces come out as they did on the node. */
  capturedAt: string;
  object: KubeObject;
  pods?: KubeObject[];
}

function fixture(name: string): Fixture {
  return JSON.parse(readFileSync(`${TESTDATA}${name}.json`, 'utf8')) as Fixture;
}

function capturedAt(f: Fixture): number {
  return Date.parse(f.capturedAt);
}

function judged(f: Fixture, now = capturedAt(f)): ReturnType<typeof healthOf> {
  return healthOf(f.object, { pods: f.pods, now });
}

const created = (o: KubeObject): number => Date.parse(o.metadata.creationTimestamp ?? '');

interface PodStatusShape {
  containerStatuses?: Array<{ state?: { running?: { startedAt?: string } } }>;
}

const runningSince = (pod: KubeObject): number =>
  Date.parse((pod.status as PodStatusShape).containerStatuses?.[0]?.state?.running?.startedAt ?? '');

/** [fixture, state, reason, part of the message] as a person reads them. */
const CAPTURED: Array<[string, HealthState, string, string]> = [
  ['deployment-created', 'in_progress', 'LessReplicas', '0/3 replicas created'],
  ['deployment-rolling-out', 'in_progress', 'LessAvailable', '/3 replicas available'],
  ['deployment-available', 'current', 'Available', '3/3 replicas available'],
  // 6 s after the pod's creation: the kubelet may still succeed on its retry.
  ['deployment-err-image-pull', 'in_progress', 'LessAvailable', ': container main: ErrImagePull: failed to pull'],
  [
    'deployment-image-pull-backoff',
    'failed',
    'ImagePullBackOff',
    ': container main: ImagePullBackOff: Back-off pulling image "nope.invalid/none:1"',
  ],
  ['deployment-err-image-never-pull', 'failed', 'ErrImageNeverPull', 'is not present with pull policy of Never'],
  ['deployment-progress-deadline-exceeded', 'failed', 'ProgressDeadlineExceeded', 'has timed out progressing'],
  ['deployment-create-container-config-error', 'in_progress', 'LessAvailable', 'configmap "absent" not found'],
  [
    'deployment-crashloop',
    'failed',
    'CrashLoopBackOff',
    'container main: CrashLoopBackOff: last Error (exit code 1); back-off',
  ],
  // Up and (no probe) ready between two crashes, its Deployment's counters read 1/1 available.
  [
    'deployment-crashloop-between-backoffs',
    'failed',
    'CrashLoopBackOff',
    'restarted 3 times, last Error (exit code 2)',
  ],
  // The old pod still crash-loops while the fix rolls out: it does not speak for the rollout.
  ['deployment-fix-rolling-out', 'in_progress', 'ExtraPods', '1 old replica pending termination'],
  ['deployment-fix-rolled-out', 'current', 'Available', '1/1 replicas available'],
  ['statefulset-created', 'in_progress', 'LessReplicas', '0/2 replicas created'],
  ['statefulset-ready', 'current', 'Ready', '2/2 replicas ready'],
  ['statefulset-partition-rolled-out', 'current', 'PartitionRolledOut', '1/1 replicas updated (partition 1)'],
  ['daemonset-created', 'in_progress', 'NoObservedGeneration', 'not yet observed'],
  ['daemonset-available', 'current', 'Available', '1/1 pods available'],
  ['job-created', 'in_progress', 'JobNotStarted', 'not started'],
  ['job-running', 'in_progress', 'JobRunning', '1 active, 0/1 succeeded, 0 failed'],
  ['job-complete', 'current', 'Complete', 'Job completed: 1/1 succeeded'],
  [
    'job-failed',
    'failed',
    'BackoffLimitExceeded',
    'Job failed: BackoffLimitExceeded: Job has reached the specified backoff limit',
  ],
  ['pvc-pending', 'in_progress', 'NotBound', 'Pending: not bound to a volume'],
  ['service-clusterip', 'current', 'Ready', 'type ClusterIP'],
  ['service-loadbalancer-pending', 'in_progress', 'NoIngress', 'waiting for the load balancer'],
  ['crd-created', 'in_progress', 'Installing', 'establish'],
  ['crd-established', 'current', 'Established', 'established: widgets.'],
  ['crd-names-not-accepted', 'failed', 'ListKindConflict', '"WidgetList" is already in use'],
  ['pdb-sufficient', 'current', 'SufficientPods', '3 healthy pods, 2 required'],
  ['pdb-insufficient', 'in_progress', 'InsufficientPods', '3 healthy pods, 5 required'],
  ['namespace-active', 'current', 'Active', 'active'],
  ['namespace-terminating', 'terminating', 'Terminating', 'being deleted'],
  ['configmap', 'current', 'Current', 'exists'],
];

describe('healthOf on objects captured from a real node', () => {
  it.each(CAPTURED)('%s: %s %s', (name, state, reason, message) => {
    const health = judged(fixture(name));
    expect(health.state).toBe(state);
    expect(health.reason).toBe(reason);
    expect(health.message).toContain(message);
  });

  it('judges every captured file (a new capture needs its expected health here)', () => {
    const files = readdirSync(TESTDATA)
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -'.json'.length));
    expect(files.sort()).toEqual(CAPTURED.map(([name]) => name).sort());
  });

  it('keeps a rollout whose old pod crash-loops in progress, naming its own counts', () => {
    const f = fixture('deployment-fix-rolling-out');
    const hashes = new Set(f.pods?.map((p) => p.metadata.labels?.['pod-template-hash']));
    expect(hashes.size).toBe(2);
    expect(judged(f).reason).not.toBe('CrashLoopBackOff');
  });

  it('fails an image pull once the grace since the pod was created has passed', () => {
    const f = fixture('deployment-err-image-pull');
    const pod = f.pods![0];
    const end = created(pod) + POD_FAILURE_GRACE_MS;
    expect(recheckAt(f.object, { pods: f.pods, now: capturedAt(f) })).toBe(end);
    expect(judged(f, end - 1).state).toBe('in_progress');
    expect(judged(f, end)).toEqual({
      state: 'failed',
      reason: 'ErrImagePull',
      message: expect.stringMatching(
        new RegExp(`^pod ${pod.metadata.name}: container main: ErrImagePull: failed to pull and unpack image`),
      ),
    });
    expect(recheckAt(f.object, { pods: f.pods, now: end })).toBeUndefined();
  });

  it('fails a container whose ConfigMap is missing after the same grace', () => {
    const f = fixture('deployment-create-container-config-error');
    const end = created(f.pods![0]) + POD_FAILURE_GRACE_MS;
    expect(judged(f, end)).toMatchObject({ state: 'failed', reason: 'CreateContainerConfigError' });
    expect(judged(f, end).message).toContain(
      'container main: CreateContainerConfigError: configmap "absent" not found',
    );
  });

  it('counts a crash-looping container that stays up long enough as recovered', () => {
    const f = fixture('deployment-crashloop-between-backoffs');
    const end = runningSince(f.pods![0]) + CRASH_LOOP_WINDOW_MS;
    expect(recheckAt(f.object, { pods: f.pods, now: capturedAt(f) })).toBe(end);
    expect(judged(f, end)).toMatchObject({ state: 'current', reason: 'Available' });
  });

  it('judges a workload without its pods by its own status', () => {
    const f = fixture('deployment-image-pull-backoff');
    expect(healthOf(f.object, { now: capturedAt(f) })).toMatchObject({ state: 'in_progress', reason: 'LessAvailable' });
  });

  it('judges the captured pods themselves', () => {
    const pod = (name: string): KubeObject => fixture(name).pods![0];
    const at = (name: string): number => capturedAt(fixture(name));
    expect(healthOf(pod('deployment-available'), { now: at('deployment-available') })).toMatchObject({
      state: 'current',
      reason: 'Ready',
    });
    expect(healthOf(pod('deployment-image-pull-backoff'), { now: at('deployment-image-pull-backoff') })).toMatchObject({
      state: 'failed',
      reason: 'ImagePullBackOff',
    });
    expect(healthOf(pod('deployment-err-image-pull'), { now: at('deployment-err-image-pull') })).toMatchObject({
      state: 'in_progress',
      reason: 'PodPending',
      message: expect.stringContaining('container main: ErrImagePull'),
    });
    expect(healthOf(pod('job-complete'))).toMatchObject({ state: 'current', reason: 'PodSucceeded' });
    expect(healthOf(pod('job-failed'))).toEqual({
      state: 'failed',
      reason: 'PodFailed',
      message: 'container main: Error (exit code 1)',
    });
  });

  it('names the pods of the captured workloads', () => {
    const job = fixture('job-complete').object;
    expect(podsMatter(job)).toEqual({
      namespace: job.metadata.namespace,
      selector: { 'batch.kubernetes.io/controller-uid': expect.any(String) },
    });
    expect(podsMatter(fixture('deployment-available').object)).toEqual({
      namespace: expect.stringMatching(/^health-fixtures-/),
      selector: { app: 'web' },
    });
    for (const name of ['pvc-pending', 'service-clusterip', 'crd-established', 'pdb-sufficient', 'configmap'])
      expect(podsMatter(fixture(name).object)).toBeUndefined();
  });
});

// ---- edge cases, built by hand after cli-utils' tests and the Kubernetes API reference ----

const T0 = Date.parse('2026-12-06T12:00:00Z');
const at = (ms: number): string => new Date(ms).toISOString();

function object(apiVersion: string, kind: string, rest: Record<string, unknown> = {}, meta = {}): KubeObject {
  return { apiVersion, kind, metadata: { name: 'x', namespace: 'ns', generation: 1, ...meta }, ...rest };
}

const deployment = (status: Record<string, unknown>, spec: Record<string, unknown> = {}, meta = {}): KubeObject =>
  object(
    'apps/v1',
    'Deployment',
    // progressDeadlineSeconds: the API server's default, as every Deployment read back has it.
    { spec: { replicas: 2, progressDeadlineSeconds: 600, selector: { matchLabels: { app: 'x' } }, ...spec }, status },
    meta,
  );

const rolledOut = [
  { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable' },
  { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' },
];
const availableStatus = {
  observedGeneration: 1,
  replicas: 2,
  updatedReplicas: 2,
  readyReplicas: 2,
  availableReplicas: 2,
  conditions: rolledOut,
};

function pod(status: Record<string, unknown>, meta: Record<string, unknown> = {}): KubeObject {
  const labels = { app: 'x', 'pod-template-hash': 'new' };
  return object('v1', 'Pod', { status }, { name: 'web-1', creationTimestamp: at(T0), labels, ...meta });
}

const waitingPod = (reason: string, extra: Record<string, unknown> = {}, meta = {}): KubeObject =>
  pod(
    {
      phase: 'Pending',
      containerStatuses: [
        { name: 'app', ready: false, restartCount: 0, state: { waiting: { reason, message: 'm' } }, ...extra },
      ],
    },
    meta,
  );

function crashedPod(restartCount: number, state: Record<string, unknown>, ready: boolean, exitCode = 1): KubeObject {
  const lastState = { terminated: { exitCode, reason: exitCode ? 'Error' : 'Completed', finishedAt: at(T0 + 5_000) } };
  return pod({ phase: 'Running', containerStatuses: [{ name: 'app', ready, restartCount, state, lastState }] });
}

type Case = [string, KubeObject | undefined, HealthState, string];

function check(cases: Case[], now = T0, pods?: KubeObject[]): void {
  it.each(cases)('%s', (_name, obj, state, reason) => {
    expect(healthOf(obj, { now, pods })).toMatchObject({ state, reason });
  });
}

describe('healthOf: generic properties, before any kind rule', () => {
  check([
    ['an object not in the cluster', undefined, 'not_found', 'NotFound'],
    [
      'deletionTimestamp set',
      deployment(availableStatus, {}, { deletionTimestamp: at(T0) }),
      'terminating',
      'Terminating',
    ],
    [
      'observedGeneration behind generation',
      deployment(availableStatus, {}, { generation: 2 }),
      'in_progress',
      'LatestGenerationNotObserved',
    ],
    ['observedGeneration not written yet: the kind rule decides', deployment({}), 'in_progress', 'LessReplicas'],
    [
      'Stalled=True on any kind',
      deployment({ ...availableStatus, conditions: [{ type: 'Stalled', status: 'True', reason: 'Quota' }] }),
      'failed',
      'Quota',
    ],
  ]);

  it('names the finalizers a terminating object waits for', () => {
    const obj = object('v1', 'ConfigMap', {}, { deletionTimestamp: at(T0), finalizers: ['example.com/keep', 'b/c'] });
    expect(healthOf(obj).message).toBe('being deleted; waiting for finalizers example.com/keep, b/c');
  });

  it('says which generation the controller has not seen', () => {
    expect(healthOf(deployment(availableStatus, {}, { generation: 3 })).message).toBe(
      'generation 3 not yet observed by its controller (observed 1)',
    );
  });
});

describe('healthOf: Deployment', () => {
  const status = (s: Record<string, unknown>): KubeObject => deployment({ ...availableStatus, ...s });
  check([
    ['every replica updated and available', status({}), 'current', 'Available'],
    [
      'spec.replicas unset counts as 1',
      deployment(
        { ...availableStatus, replicas: 1, updatedReplicas: 1, readyReplicas: 1, availableReplicas: 1 },
        { replicas: undefined },
      ),
      'current',
      'Available',
    ],
    [
      'scaled to zero',
      deployment({ observedGeneration: 1, conditions: rolledOut }, { replicas: 0 }),
      'current',
      'Available',
    ],
    ['too few replicas', status({ replicas: 1 }), 'in_progress', 'LessReplicas'],
    ['too few updated', status({ updatedReplicas: 1 }), 'in_progress', 'LessUpdated'],
    ['old replicas still terminating', status({ replicas: 3 }), 'in_progress', 'ExtraPods'],
    ['too few available', status({ availableReplicas: 1 }), 'in_progress', 'LessAvailable'],
    ['too few ready', status({ readyReplicas: 1, availableReplicas: 2 }), 'in_progress', 'LessReady'],
    [
      'new ReplicaSet not yet reported available',
      status({
        conditions: [
          { type: 'Available', status: 'True' },
          { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated' },
        ],
      }),
      'in_progress',
      'ReplicaSetNotAvailable',
    ],
    [
      'no progress deadline: Available alone decides',
      deployment(
        { ...availableStatus, conditions: [{ type: 'Available', status: 'True' }] },
        { progressDeadlineSeconds: 2147483647 },
      ),
      'current',
      'Available',
    ],
    [
      'Available=False',
      status({ conditions: [rolledOut[1], { type: 'Available', status: 'False' }] }),
      'in_progress',
      'DeploymentNotAvailable',
    ],
    [
      'progress deadline exceeded',
      status({
        replicas: 1,
        conditions: [
          {
            type: 'Progressing',
            status: 'False',
            reason: 'ProgressDeadlineExceeded',
            message: 'ReplicaSet "x-1" has timed out progressing.',
          },
        ],
      }),
      'failed',
      'ProgressDeadlineExceeded',
    ],
  ]);

  it('says why pods cannot be created when the controller knows (quota, admission)', () => {
    const failure = {
      type: 'ReplicaFailure',
      status: 'True',
      reason: 'FailedCreate',
      message: 'pods "x-1" is forbidden: exceeded quota',
    };
    expect(healthOf(deployment({ observedGeneration: 1, replicas: 0, conditions: [failure] }))).toEqual({
      state: 'in_progress',
      reason: 'ReplicaFailure',
      message: '0/2 replicas created; FailedCreate: pods "x-1" is forbidden: exceeded quota',
    });
  });
});

describe('healthOf: ReplicaSet, StatefulSet, DaemonSet', () => {
  const rs = (status: Record<string, unknown>): KubeObject =>
    object('apps/v1', 'ReplicaSet', { spec: { replicas: 2 }, status: { observedGeneration: 1, ...status } });
  const full = { replicas: 2, fullyLabeledReplicas: 2, readyReplicas: 2, availableReplicas: 2 };
  const sts = (status: Record<string, unknown>, spec: Record<string, unknown> = {}): KubeObject =>
    object('apps/v1', 'StatefulSet', { spec: { replicas: 3, ...spec }, status: { observedGeneration: 1, ...status } });
  const stsReady = { replicas: 3, readyReplicas: 3, updatedReplicas: 3, currentRevision: 'r1', updateRevision: 'r1' };
  const partition = (n: number): Record<string, unknown> => ({
    updateStrategy: { type: 'RollingUpdate', rollingUpdate: { partition: n } },
  });
  const ds = (status: Record<string, unknown>, spec: Record<string, unknown> = {}): KubeObject =>
    object('apps/v1', 'DaemonSet', { spec, status: { observedGeneration: 1, ...status } });
  const dsReady = {
    desiredNumberScheduled: 2,
    currentNumberScheduled: 2,
    updatedNumberScheduled: 2,
    numberAvailable: 2,
    numberReady: 2,
  };
  check([
    ['ReplicaSet available', rs(full), 'current', 'Available'],
    ['ReplicaSet labels not yet on every pod', rs({ ...full, fullyLabeledReplicas: 1 }), 'in_progress', 'LessLabelled'],
    [
      'ReplicaSet with ReplicaFailure',
      rs({ ...full, conditions: [{ type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate' }] }),
      'in_progress',
      'ReplicaFailure',
    ],
    ['StatefulSet rolled out', sts(stsReady), 'current', 'Ready'],
    [
      'StatefulSet revision not yet current',
      sts({ ...stsReady, currentRevision: 'r0' }),
      'in_progress',
      'RevisionMismatch',
    ],
    ['StatefulSet replicas not updated', sts({ ...stsReady, updatedReplicas: 1 }), 'in_progress', 'LessUpdated'],
    [
      'StatefulSet partition 2 of 3, ordinal 2 not updated',
      sts({ ...stsReady, updatedReplicas: 0, currentRevision: 'r0' }, partition(2)),
      'in_progress',
      'PartitionRollout',
    ],
    [
      'StatefulSet partition 2 of 3, ordinal 2 updated',
      sts({ ...stsReady, updatedReplicas: 1, currentRevision: 'r0' }, partition(2)),
      'current',
      'PartitionRolledOut',
    ],
    ['StatefulSet created with a partition, nothing to roll out', sts(stsReady, partition(2)), 'current', 'Ready'],
    [
      'StatefulSet partition above the replicas',
      sts({ ...stsReady, updatedReplicas: 0, currentRevision: 'r0' }, partition(5)),
      'current',
      'PartitionRolledOut',
    ],
    [
      'StatefulSet OnDelete with old revisions, pods ready',
      sts({ ...stsReady, updatedReplicas: 0, currentRevision: 'r0' }, { updateStrategy: { type: 'OnDelete' } }),
      'current',
      'Ready',
    ],
    [
      'StatefulSet OnDelete, pods not ready',
      sts({ ...stsReady, readyReplicas: 1 }, { updateStrategy: { type: 'OnDelete' } }),
      'in_progress',
      'LessReady',
    ],
    ['DaemonSet available', ds(dsReady), 'current', 'Available'],
    ['DaemonSet on no node at all', ds({ desiredNumberScheduled: 0 }), 'current', 'Available'],
    [
      'DaemonSet not observed yet',
      object('apps/v1', 'DaemonSet', { status: { desiredNumberScheduled: 1 } }),
      'in_progress',
      'NoObservedGeneration',
    ],
    ['DaemonSet nodes not counted yet', ds({}), 'in_progress', 'NoDesiredNumber'],
    ['DaemonSet not on every node', ds({ ...dsReady, currentNumberScheduled: 1 }), 'in_progress', 'LessCurrent'],
    ['DaemonSet pods not updated', ds({ ...dsReady, updatedNumberScheduled: 1 }), 'in_progress', 'LessUpdated'],
    [
      'DaemonSet OnDelete, pods not updated',
      ds({ ...dsReady, updatedNumberScheduled: 1 }, { updateStrategy: { type: 'OnDelete' } }),
      'current',
      'Available',
    ],
    ['DaemonSet pods not available', ds({ ...dsReady, numberAvailable: 1 }), 'in_progress', 'LessAvailable'],
    ['DaemonSet pod on a node it must leave', ds({ ...dsReady, numberMisscheduled: 1 }), 'in_progress', 'Misscheduled'],
  ]);
});

describe('healthOf: Pod', () => {
  const running = (ready: string): KubeObject =>
    pod({
      phase: 'Running',
      conditions: [{ type: 'Ready', status: ready, message: 'containers with unready status: [app]' }],
    });
  const unschedulable = pod({
    phase: 'Pending',
    conditions: [
      {
        type: 'PodScheduled',
        status: 'False',
        reason: 'Unschedulable',
        message: '0/1 nodes are available: 1 Insufficient cpu.',
      },
    ],
  });
  check(
    [
      ['running and ready', running('True'), 'current', 'Ready'],
      ['running, not ready', running('False'), 'in_progress', 'PodRunningNotReady'],
      ['succeeded', pod({ phase: 'Succeeded' }), 'current', 'PodSucceeded'],
      ['failed, evicted', pod({ phase: 'Failed', reason: 'Evicted', message: 'low on memory' }), 'failed', 'Evicted'],
      ['not yet seen by a kubelet', pod({}), 'in_progress', 'PodNotObserved'],
      ['pending', pod({ phase: 'Pending' }), 'in_progress', 'PodPending'],
      ['its node stopped reporting', pod({ phase: 'Unknown' }), 'unknown', 'PodPhaseUnknown'],
      ['a phase Kubernetes does not have', pod({ phase: 'Sleeping' }), 'unknown', 'UnreadableStatus'],
      ['unschedulable, within the grace', unschedulable, 'in_progress', 'PodNotScheduled'],
      ['CrashLoopBackOff fails at once', waitingPod('CrashLoopBackOff'), 'failed', 'CrashLoopBackOff'],
      ['ErrImageNeverPull fails at once', waitingPod('ErrImageNeverPull'), 'failed', 'ErrImageNeverPull'],
      ['InvalidImageName fails at once', waitingPod('InvalidImageName'), 'failed', 'InvalidImageName'],
      ['ImagePullBackOff within the grace', waitingPod('ImagePullBackOff'), 'in_progress', 'PodPending'],
      ['ContainerCreating is progress', waitingPod('ContainerCreating'), 'in_progress', 'PodPending'],
      [
        'an init container that cannot pull',
        pod({
          phase: 'Pending',
          initContainerStatuses: [
            { name: 'init', restartCount: 0, state: { waiting: { reason: 'ErrImageNeverPull' } } },
          ],
        }),
        'failed',
        'ErrImageNeverPull',
      ],
      [
        'terminated again after 3 restarts',
        crashedPod(3, { terminated: { exitCode: 1, reason: 'Error' } }, false),
        'failed',
        'CrashLoopBackOff',
      ],
      [
        'running, unready, after 3 restarts',
        crashedPod(3, { running: { startedAt: at(T0 + 6_000) } }, false),
        'failed',
        'CrashLoopBackOff',
      ],
      [
        'running after 2 restarts',
        crashedPod(2, { running: { startedAt: at(T0 + 6_000) } }, false),
        'in_progress',
        'PodRunningNotReady',
      ],
      [
        'restarted 3 times, each exit clean',
        crashedPod(3, { running: { startedAt: at(T0 + 6_000) } }, false, 0),
        'in_progress',
        'PodRunningNotReady',
      ],
    ],
    T0 + 7_000,
  );

  it("fails an unschedulable pod after kstatus' 15 s, with the scheduler's message", () => {
    const end = T0 + UNSCHEDULABLE_GRACE_MS;
    expect(recheckAt(unschedulable, { now: T0 + 1_000 })).toBe(end);
    expect(healthOf(unschedulable, { now: end })).toEqual({
      state: 'failed',
      reason: 'PodUnschedulable',
      message: '0/1 nodes are available: 1 Insufficient cpu.',
    });
  });

  it("starts the pull grace again at the container's last exit", () => {
    const restarted = waitingPod('ErrImagePull', {
      lastState: { terminated: { exitCode: 1, finishedAt: at(T0 + 60_000) } },
    });
    expect(healthOf(restarted, { now: T0 + 65_000 }).state).toBe('in_progress');
    expect(recheckAt(restarted, { now: T0 + 65_000 })).toBe(T0 + 60_000 + POD_FAILURE_GRACE_MS);
    expect(healthOf(restarted, { now: T0 + 70_000 }).state).toBe('failed');
  });

  it('fails a pull at once when no time says when it began', () => {
    expect(healthOf(waitingPod('ErrImagePull', {}, { creationTimestamp: 'yesterday' }), { now: T0 }).state).toBe(
      'failed',
    );
  });

  it('tells why a crash-looping container exited', () => {
    const looping = waitingPod('CrashLoopBackOff', {
      restartCount: 4,
      state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s restarting failed container=app' } },
      lastState: { terminated: { exitCode: 137, reason: 'OOMKilled' } },
    });
    expect(healthOf(looping).message).toBe(
      'container app: CrashLoopBackOff: last OOMKilled (exit code 137); back-off 40s restarting failed container=app',
    );
  });

  it('counts a crash-looping container up and ready for the window as recovered', () => {
    const up = crashedPod(5, { running: { startedAt: at(T0 + 6_000) } }, true);
    up.status = { ...(up.status as object), conditions: [{ type: 'Ready', status: 'True' }] };
    expect(healthOf(up, { now: T0 + 7_000 }).state).toBe('failed');
    expect(recheckAt(up, { now: T0 + 7_000 })).toBe(T0 + 6_000 + CRASH_LOOP_WINDOW_MS);
    expect(healthOf(up, { now: T0 + 6_000 + CRASH_LOOP_WINDOW_MS })).toMatchObject({
      state: 'current',
      reason: 'Ready',
    });
  });

  it('counts a container up for the window since its last crash as out of the loop, ready or not', () => {
    const unready = crashedPod(3, { running: { startedAt: at(T0 + 6_000) } }, false);
    expect(healthOf(unready, { now: T0 + 6_000 + CRASH_LOOP_WINDOW_MS })).toMatchObject({
      state: 'in_progress',
      reason: 'PodRunningNotReady',
    });
  });
});

describe('healthOf: a workload with its pods', () => {
  const progressing = deployment({ ...availableStatus, availableReplicas: 1, readyReplicas: 1 });
  const pullBackOff = (name: string, meta = {}): KubeObject =>
    waitingPod(
      'ImagePullBackOff',
      { state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "nope:1"' } } },
      { name, ...meta },
    );

  it("is failed with the kubelet's reason and message", () => {
    expect(healthOf(progressing, { now: T0 + 11_000, pods: [pullBackOff('web-7d9f-abc')] })).toEqual({
      state: 'failed',
      reason: 'ImagePullBackOff',
      message: 'pod web-7d9f-abc: container app: ImagePullBackOff: Back-off pulling image "nope:1"',
    });
  });

  it('gives the same answer whatever order the pods come in', () => {
    const pods = [pullBackOff('web-b'), waitingPod('ErrImageNeverPull', {}, { name: 'web-a' }), pullBackOff('web-c')];
    const answers = [pods, [...pods].reverse(), [pods[2], pods[0], pods[1]]].map((p) =>
      healthOf(progressing, { now: T0 + 11_000, pods: p }),
    );
    expect(new Set(answers.map((a) => JSON.stringify(a))).size).toBe(1);
    expect(answers[0].message).toMatch(/^pod web-a: /);
  });

  it('waits out the grace, saying what the pod waits for and when to look again', () => {
    const pods = [pullBackOff('web-1')];
    expect(healthOf(progressing, { now: T0 + 5_000, pods })).toEqual({
      state: 'in_progress',
      reason: 'LessAvailable',
      message: '1/2 replicas available; pod web-1: container app: ImagePullBackOff: Back-off pulling image "nope:1"',
    });
    expect(recheckAt(progressing, { now: T0 + 5_000, pods })).toBe(T0 + POD_FAILURE_GRACE_MS);
  });

  it('says which pod the scheduler cannot place, without failing (a node may be on its way)', () => {
    const pending = pod({
      phase: 'Pending',
      conditions: [
        {
          type: 'PodScheduled',
          status: 'False',
          reason: 'Unschedulable',
          message: '0/1 nodes are available: 1 Insufficient cpu.',
        },
      ],
    });
    expect(healthOf(progressing, { now: T0 + 600_000, pods: [pending] })).toEqual({
      state: 'in_progress',
      reason: 'LessAvailable',
      message: '1/2 replicas available; pod web-1: Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.',
    });
  });

  it('ignores pods being deleted, finished, of an older revision, or unreadable', () => {
    const pods = [
      pullBackOff('web-deleted', { deletionTimestamp: at(T0) }),
      { ...pullBackOff('web-evicted'), status: { phase: 'Failed', reason: 'Evicted' } },
      pullBackOff('web-old', { labels: { app: 'x', 'pod-template-hash': 'old' }, creationTimestamp: at(T0 - 60_000) }),
      { ...pullBackOff('web-odd'), status: { phase: 'Pending', containerStatuses: 'garbage' } },
      pod({ phase: 'Pending' }, { name: 'web-new', creationTimestamp: at(T0) }),
      // Another workload's pod matching the same labels, created last: not a revision of this one.
      pullBackOff('job-pod', { labels: { app: 'x' }, creationTimestamp: at(T0 + 1_000) }),
    ];
    expect(healthOf(progressing, { now: T0 + 60_000, pods })).toMatchObject({
      state: 'in_progress',
      reason: 'LessAvailable',
    });
  });

  it('keeps its own failure reason once it has one', () => {
    const late = deployment({
      ...availableStatus,
      conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded' }],
    });
    expect(healthOf(late, { now: T0 + 60_000, pods: [pullBackOff('web-1')] }).reason).toBe('ProgressDeadlineExceeded');
  });

  it('does not look at the pods of kinds that have none', () => {
    const cm = object('v1', 'ConfigMap');
    expect(healthOf(cm, { now: T0 + 60_000, pods: [pullBackOff('web-1')] }).state).toBe('current');
  });
});

describe('healthOf: Job, PVC, Service, CRD, PodDisruptionBudget, Namespace', () => {
  const job = (status: Record<string, unknown>, spec: Record<string, unknown> = {}): KubeObject =>
    object('batch/v1', 'Job', { spec: { completions: 1, ...spec }, status });
  const cond = (type: string, status: string, reason = '', message = ''): Record<string, unknown> => ({
    type,
    status,
    reason,
    message,
  });
  const lb = (ingress: unknown): KubeObject =>
    object('v1', 'Service', { spec: { type: 'LoadBalancer' }, status: { loadBalancer: { ingress } } });
  const crd = (...conditions: Array<Record<string, unknown>>): KubeObject =>
    object('apiextensions.k8s.io/v1', 'CustomResourceDefinition', {
      spec: { group: 'g', names: { plural: 'ws' } },
      status: { conditions },
    });
  const pdb = (status: Record<string, unknown>): KubeObject => object('policy/v1', 'PodDisruptionBudget', { status });
  check([
    [
      'Job decided to fail, pods not yet stopped',
      job({ startTime: at(T0), conditions: [cond('FailureTarget', 'True', 'DeadlineExceeded')] }),
      'failed',
      'DeadlineExceeded',
    ],
    [
      'Job suspended on purpose',
      job({ conditions: [cond('Suspended', 'True')] }, { suspend: true }),
      'current',
      'Suspended',
    ],
    [
      'Job resumed, Suspended still True',
      job({ conditions: [cond('Suspended', 'True')] }, { suspend: false }),
      'in_progress',
      'JobNotStarted',
    ],
    [
      'PVC bound',
      object('v1', 'PersistentVolumeClaim', { spec: { volumeName: 'pv-1' }, status: { phase: 'Bound' } }),
      'current',
      'Bound',
    ],
    [
      'PVC lost its volume',
      object('v1', 'PersistentVolumeClaim', { status: { phase: 'Lost' } }),
      'failed',
      'ClaimLost',
    ],
    ['PVC with no status yet', object('v1', 'PersistentVolumeClaim'), 'in_progress', 'NotBound'],
    ['LoadBalancer with an IP', lb([{ ip: '203.0.113.7' }]), 'current', 'LoadBalancerReady'],
    ['LoadBalancer with a hostname', lb([{ hostname: 'lb.example.com' }]), 'current', 'LoadBalancerReady'],
    ['LoadBalancer, empty ingress', lb([]), 'in_progress', 'NoIngress'],
    ['NodePort needs nothing', object('v1', 'Service', { spec: { type: 'NodePort' } }), 'current', 'Ready'],
    ['CRD installing', crd(cond('Established', 'False', 'Installing')), 'in_progress', 'Installing'],
    ['CRD refused otherwise', crd(cond('Established', 'False', 'Refused', 'no')), 'failed', 'Refused'],
    ['CRD with no conditions yet', crd(), 'in_progress', 'Installing'],
    ['PDB not counted yet', pdb({ currentHealthy: 0, desiredHealthy: 0 }), 'in_progress', 'NoObservedGeneration'],
    [
      'PDB exactly enough',
      pdb({ observedGeneration: 1, currentHealthy: 2, desiredHealthy: 2 }),
      'current',
      'SufficientPods',
    ],
    ['Namespace with no phase', object('v1', 'Namespace'), 'in_progress', 'NotActive'],
    [
      'Namespace Terminating',
      object('v1', 'Namespace', { status: { phase: 'Terminating' } }),
      'terminating',
      'Terminating',
    ],
  ]);
});

describe('healthOf: kinds with no rule of their own', () => {
  const custom = (...conditions: Array<Record<string, unknown>>): KubeObject =>
    object('example.com/v1', 'Widget', { status: { observedGeneration: 1, conditions } });
  check([
    ['no conditions at all', object('example.com/v1', 'Widget'), 'current', 'Current'],
    ['only conditions it does not know', custom({ type: 'Synced', status: 'False' }), 'current', 'Current'],
    ['Ready=True', custom({ type: 'Ready', status: 'True' }), 'current', 'Ready'],
    [
      'Ready=False',
      custom({ type: 'Ready', status: 'False', reason: 'DependencyNotReady', message: 'waiting for db' }),
      'in_progress',
      'DependencyNotReady',
    ],
    ['Ready=Unknown', custom({ type: 'Ready', status: 'Unknown' }), 'in_progress', 'NotReady'],
    [
      'Ready=False and Stalled=True',
      custom({ type: 'Ready', status: 'False' }, { type: 'Stalled', status: 'True', reason: 'InvalidSpec' }),
      'failed',
      'InvalidSpec',
    ],
    [
      'Reconciling=True beats Ready=True',
      custom({ type: 'Ready', status: 'True' }, { type: 'Reconciling', status: 'True', reason: 'Progressing' }),
      'in_progress',
      'Progressing',
    ],
    [
      'Stalled wins over Reconciling listed first',
      custom({ type: 'Reconciling', status: 'True' }, { type: 'Stalled', status: 'True' }),
      'failed',
      'Stalled',
    ],
    [
      'Stalled=False is no news',
      custom({ type: 'Stalled', status: 'False' }, { type: 'Ready', status: 'True' }),
      'current',
      'Ready',
    ],
    ['a Ready status no one defined', custom({ type: 'Ready', status: 'Maybe' }), 'unknown', 'UnreadableStatus'],
    ['a cluster-scoped core kind', object('v1', 'PersistentVolume'), 'current', 'Current'],
  ]);

  it("passes a controller's Ready message on", () => {
    const obj = custom({ type: 'Ready', status: 'False', reason: 'DependencyNotReady', message: 'waiting for db' });
    expect(healthOf(obj).message).toBe('waiting for db');
  });
});

describe('healthOf: whatever the status holds, an answer and never an exception', () => {
  const cases: Array<[string, KubeObject, string]> = [
    ['status a string', deployment('ok' as unknown as Record<string, unknown>), 'status is "ok", not an object'],
    [
      'a count as text',
      deployment({ ...availableStatus, readyReplicas: 'three' }),
      'status.readyReplicas is "three", not an integer',
    ],
    ['a fractional count', deployment({ ...availableStatus, replicas: 1.5 }), 'status.replicas is 1.5, not an integer'],
    [
      'conditions a map',
      deployment({ conditions: { Ready: true } }),
      'status.conditions is {"Ready":true}, not a list',
    ],
    [
      'generation as text',
      deployment(availableStatus, {}, { generation: 'one' }),
      'metadata.generation is "one", not an integer',
    ],
    ['phase a number', pod({ phase: 7 }), 'status.phase is 7, not a string'],
    [
      'ingress a string',
      object('v1', 'Service', { spec: { type: 'LoadBalancer' }, status: { loadBalancer: { ingress: 'x' } } }),
      'status.loadBalancer.ingress is "x", not a list',
    ],
    [
      'apiVersion a number',
      { apiVersion: 1, kind: 'Pod', metadata: { name: 'x' } } as unknown as KubeObject,
      'apiVersion and kind must be strings',
    ],
    ['metadata missing', { apiVersion: 'v1', kind: 'Pod' } as unknown as KubeObject, 'metadata is not an object'],
  ];
  it.each(cases)('%s: unknown, naming the field', (_name, obj, message) => {
    expect(healthOf(obj)).toEqual({
      state: 'unknown',
      reason: 'UnreadableStatus',
      message: `cannot read the status: ${message}`,
    });
  });

  it('skips a condition entry that is not one, keeping the others', () => {
    const obj = object('example.com/v1', 'Widget', {
      status: { conditions: [7, null, { type: 5 }, { type: 'Ready', status: 'False' }] },
    });
    expect(healthOf(obj)).toMatchObject({ state: 'in_progress', reason: 'NotReady' });
  });

  it('survives garbage at every field the rules read, for every kind', () => {
    const garbage: unknown[] = [null, 'x', -1, 1.5, true, [], {}, [{}], { a: [1] }];
    const paths = [
      'status',
      'status.conditions',
      'status.replicas',
      'status.phase',
      'status.containerStatuses',
      'status.initContainerStatuses',
      'status.loadBalancer',
      'status.observedGeneration',
      'spec',
      'spec.replicas',
      'spec.updateStrategy',
      'spec.selector',
      'metadata.generation',
      'metadata.deletionTimestamp',
      'metadata.finalizers',
      'metadata.creationTimestamp',
    ];
    const kinds: Array<[string, string]> = [
      ['apps/v1', 'Deployment'],
      ['apps/v1', 'ReplicaSet'],
      ['apps/v1', 'StatefulSet'],
      ['apps/v1', 'DaemonSet'],
      ['batch/v1', 'Job'],
      ['v1', 'Pod'],
      ['v1', 'PersistentVolumeClaim'],
      ['v1', 'Service'],
      ['apiextensions.k8s.io/v1', 'CustomResourceDefinition'],
      ['policy/v1', 'PodDisruptionBudget'],
      ['v1', 'Namespace'],
      ['example.com/v1', 'Widget'],
    ];
    const podsCase = [waitingPod('ImagePullBackOff'), crashedPod(3, { running: {} }, true)];
    let judgedCount = 0;
    for (const [apiVersion, kind] of kinds)
      for (const path of paths)
        for (const value of garbage) {
          const obj = object(apiVersion, kind, { spec: { selector: { matchLabels: { app: 'x' } } }, status: {} });
          const keys = path.split('.');
          let node = obj as Record<string, unknown>;
          for (const key of keys.slice(0, -1)) node = (node[key] ?? (node[key] = {})) as Record<string, unknown>;
          node[keys[keys.length - 1]] = value;
          const ctx = { now: T0, pods: [...podsCase, obj] };
          const health = healthOf(obj, ctx);
          expect(['current', 'in_progress', 'failed', 'terminating', 'unknown']).toContain(health.state);
          expect(typeof health.message).toBe('string');
          expect(() => recheckAt(obj, ctx)).not.toThrow();
          expect(() => podsMatter(obj)).not.toThrow();
          judgedCount++;
        }
    expect(judgedCount).toBe(kinds.length * paths.length * garbage.length);
  });

  it('clips long messages and reasons to one bounded line', () => {
    const long = object('example.com/v1', 'Widget', {
      status: {
        conditions: [{ type: 'Stalled', status: 'True', reason: 'R'.repeat(500), message: `a\nb ${'m'.repeat(5000)}` }],
      },
    });
    const health = healthOf(long);
    expect(health.message.length).toBe(MESSAGE_LIMIT);
    expect(health.message).toMatch(/^a b m+…$/);
    expect(health.reason.length).toBeLessThanOrEqual(100);
  });

  it('gives the same answer for the same input', () => {
    const f = fixture('deployment-image-pull-backoff');
    expect(judged(f)).toEqual(judged(f));
  });
});

describe('podsMatter', () => {
  const cases: Array<[string, KubeObject, ReturnType<typeof podsMatter>]> = [
    ['a Deployment', deployment({}), { namespace: 'ns', selector: { app: 'x' } }],
    [
      'a StatefulSet with no namespace set',
      {
        ...object('apps/v1', 'StatefulSet', { spec: { selector: { matchLabels: { a: 'b' } } } }),
        metadata: { name: 'x' },
      },
      { namespace: 'default', selector: { a: 'b' } },
    ],
    [
      'matchExpressions only',
      object('apps/v1', 'Deployment', { spec: { selector: { matchExpressions: [{ key: 'a', operator: 'Exists' }] } } }),
      undefined,
    ],
    [
      'an empty selector (every pod)',
      object('apps/v1', 'DaemonSet', { spec: { selector: { matchLabels: {} } } }),
      undefined,
    ],
    [
      'a label value not a string',
      object('batch/v1', 'Job', { spec: { selector: { matchLabels: { a: 1 } } } }),
      undefined,
    ],
    ['a selector of garbage', object('apps/v1', 'ReplicaSet', { spec: 'x' }), undefined],
    ['a Pod (it is its own pod)', pod({}), undefined],
    [
      'a Service (its selector is not its pods)',
      object('v1', 'Service', { spec: { selector: { app: 'x' } } }),
      undefined,
    ],
    [
      'a custom kind',
      object('example.com/v1', 'Deployment', { spec: { selector: { matchLabels: { a: 'b' } } } }),
      undefined,
    ],
  ];
  it.each(cases)('%s', (_name, obj, expected) => {
    expect(podsMatter(obj)).toEqual(expected);
  });
});

describe('recheckAt', () => {
  it('is undefined when nothing waits on the clock', () => {
    expect(recheckAt(undefined)).toBeUndefined();
    expect(recheckAt(deployment(availableStatus), { now: T0 })).toBeUndefined();
    expect(recheckAt(waitingPod('CrashLoopBackOff'), { now: T0 })).toBeUndefined();
    expect(recheckAt(pod({ phase: 7 }), { now: T0 })).toBeUndefined();
  });
});
