/**
 * Kubernetes Events (core/v1) the agent records on the objects it manages, so `kubectl describe`
 * and `kubectl get events` show what the agent did and why. Recording is best effort: a failure
 * (no RBAC for events, namespace gone) is logged at debug level and never fails the caller.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../common/logger.js';
import { errorMessage } from '../common/errors.js';
import { objectId } from '../common/object-id.js';
import type { KubeClient } from './kube/client.js';
import type { KubeObject, ResourceInfo } from './kube/types.js';
import type { DriftEventNote, EventSink } from './drift.js';

const EVENTS: ResourceInfo = { group: '', version: 'v1', kind: 'Event', plural: 'events', namespaced: true };
/** The component name in `source` and `reportingComponent`. */
export const REPORTING_CONTROLLER = 'gitops-agent';

/** Builds the core/v1 Event for a note about an object (pure; exported for tests). */
export function buildEvent(
  target: Parameters<EventSink>[0],
  note: DriftEventNote,
  instance: string,
  now: Date = new Date(),
): KubeObject {
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

/** An EventSink writing through the agent's Kubernetes client. */
export function kubeEventSink(client: KubeClient, instance: string, logger: Logger): EventSink {
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
