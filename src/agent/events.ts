/**
 * Kubernetes Events (core/v1) the agent records on the objects it manages, so `kubectl describe`
 * and `kubectl get events` show what the agent did and why: drift reverted, detected or fought
 * over (drift.ts), and an object of the commit in force turning failed (`HealthFailed`, once per
 * transition, with the kubelet's or controller's reason). Recording is best effort: a failure
 * (no RBAC for events, namespace gone) is logged at debug level and never fails the caller.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../common/logger.js';
import { errorMessage } from '../common/errors.js';
import { objectId } from '../common/object-id.js';
import type { KubeClient } from './kube/client.js';
import type { KubeObject, ResourceInfo } from './kube/types.js';
import type { DriftEventNote, EventSink } from './drift.js';
import type { ObjectHealthEntry } from './health/types.js';
import { healthText } from './health-output.js';

const EVENTS: ResourceInfo = { group: '', version: 'v1', kind: 'Event', plural: 'events', namespaced: true };
/** The component name in `source` and `reportingComponent`. */
export const REPORTING_CONTROLLER = 'gitops-agent';

/**
 * The reason of the Event on an object that turned failed. Not the kubelet's `Unhealthy` (a
 * probe failing on a pod): `--field-selector reason=HealthFailed` finds the agent's alone.
 */
export const HEALTH_FAILED_REASON = 'HealthFailed';

/** What an Event says: a drift note, or an object's health failing. */
export interface EventNote {
  reason: DriftEventNote['reason'] | typeof HEALTH_FAILED_REASON;
  type: 'Normal' | 'Warning';
  message: string;
}

/** The object an Event is about. */
export type EventTarget = Parameters<EventSink>[0];

/** Records an Event of any note (drift's EventSink takes the drift notes only, so this is one too). */
export type EventRecorder = (target: EventTarget, note: EventNote) => Promise<void>;

/** The note for an object of `commit` that turned failed: its reason and message as the health rules found them. */
export function healthFailedNote(entry: ObjectHealthEntry, commit: string): EventNote {
  return {
    reason: HEALTH_FAILED_REASON,
    type: 'Warning',
    message: `Failed after applying commit ${commit.slice(0, 12)}: ${healthText(entry) || entry.state}`,
  };
}

/** Builds the core/v1 Event for a note about an object (pure; exported for tests). */
export function buildEvent(target: EventTarget, note: EventNote, instance: string, now: Date = new Date()): KubeObject {
  const { identity } = target;
  const namespace = identity.namespace ?? 'default';
  const time = now.toISOString().replace(/\.\d+Z$/, 'Z');
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: {
      name: `${identity.name}.${now.getTime().toString(16)}${randomBytes(3).toString('hex')}`.slice(0, 253),
      namespace,
    },
    involvedObject: {
      apiVersion: target.apiVersion ?? (identity.group ? `${identity.group}/v1` : 'v1'),
      kind: identity.kind,
      name: identity.name,
      ...(identity.namespace ? { namespace: identity.namespace } : {}),
      ...(target.uid ? { uid: target.uid } : {}),
    },
    reason: note.reason,
    message: note.message.slice(0, 1024),
    type: note.type,
    source: { component: REPORTING_CONTROLLER },
    reportingComponent: REPORTING_CONTROLLER,
    reportingInstance: instance.slice(0, 128),
    firstTimestamp: time,
    lastTimestamp: time,
    count: 1,
  };
}

/** An EventRecorder (and so a drift EventSink) writing through the agent's Kubernetes client. */
export function kubeEventSink(client: KubeClient, instance: string, logger: Logger): EventRecorder {
  return async (target, note) => {
    const event = buildEvent(target, note, instance);
    try {
      await client.create(EVENTS, event);
    } catch (err) {
      logger.debug(
        { object: objectId(target.identity), reason: note.reason, err: errorMessage(err) },
        'event not recorded',
      );
    }
  };
}
