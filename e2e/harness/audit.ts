/**
 * Reading the control plane's audit log: the honest way to count what a sync wrote.
 *
 * The policy (see controlplane.ts) logs write verbs at Metadata level and omits the
 * RequestReceived stage, so each write appears once, at ResponseComplete. The apiserver writes that
 * line just after sending the response, so a client can see its answer before the line exists:
 * {@link syncAuditLog} makes a known marker request and waits for it, after which every earlier
 * write is in the file.
 */
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** The fields of an audit.k8s.io/v1 Event that tests use. */
export interface AuditEvent {
  auditID: string;
  stage: string;
  verb: string;
  requestURI: string;
  user: { username: string; groups?: string[] };
  userAgent?: string;
  objectRef?: {
    resource?: string;
    subresource?: string;
    namespace?: string;
    name?: string;
    apiGroup?: string;
    apiVersion?: string;
  };
  responseStatus?: { code?: number; reason?: string };
  requestReceivedTimestamp: string;
  stageTimestamp: string;
}

export const WRITE_VERBS: readonly string[] = ['create', 'update', 'patch', 'delete', 'deletecollection'];
/** Name prefix of the marker requests made by {@link syncAuditLog}; never counted as writes. */
export const AUDIT_MARKER_PREFIX = 'gitops-audit-marker-';

/** True for the identities kube-controller-manager's controllers write as. */
export function isControllerUser(username: string): boolean {
  return username.startsWith('system:serviceaccount:kube-system:') || username === 'system:kube-controller-manager';
}

/** Parses the audit log; a half-written last line is skipped. A missing file is an empty log. */
export async function readAuditEvents(path: string): Promise<AuditEvent[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const events: AuditEvent[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      events.push(JSON.parse(line) as AuditEvent);
    } catch {
      // Only the last line can be partial (the apiserver is still writing it).
    }
  }
  return events;
}

export interface WriteFilter {
  /** Only objects in this namespace, plus the Namespace object of that name itself. */
  namespace?: string;
  /** Only requests by exactly this user. */
  username?: string;
  /** Leave out the controller-manager's controllers (`system:serviceaccount:kube-system:*`). */
  excludeControllers?: boolean;
  /** Only requests received at or after this time (epoch ms). */
  sinceMs?: number;
  /** Only requests that succeeded (2xx); by default failed attempts (a 422, a 409) count too. */
  succeededOnly?: boolean;
}

/**
 * The completed write requests in `events`: write verbs at ResponseComplete, without server-side
 * dry runs (`dryRun=All`) and without audit markers, filtered as asked.
 */
export function writeRequests(events: readonly AuditEvent[], filter: WriteFilter = {}): AuditEvent[] {
  return events.filter((e) => {
    if (e.stage !== 'ResponseComplete' || !WRITE_VERBS.includes(e.verb)) return false;
    if (/[?&]dryRun=All(&|$)/.test(e.requestURI)) return false;
    const ref = e.objectRef ?? {};
    if (ref.name?.startsWith(AUDIT_MARKER_PREFIX)) return false;
    if (filter.namespace !== undefined) {
      const isTheNamespace = ref.resource === 'namespaces' && !ref.apiGroup && ref.name === filter.namespace;
      if (ref.namespace !== filter.namespace && !isTheNamespace) return false;
    }
    if (filter.username !== undefined && e.user.username !== filter.username) return false;
    if (filter.excludeControllers && isControllerUser(e.user.username)) return false;
    if (filter.sinceMs !== undefined && Date.parse(e.requestReceivedTimestamp) < filter.sinceMs) return false;
    const code = e.responseStatus?.code ?? 0;
    if (filter.succeededOnly && (code < 200 || code >= 300)) return false;
    return true;
  });
}

/**
 * One line per write for readable assertions: `create apps/deployments ns/web 201`
 * (`patch namespaces/ns 200` for cluster-scoped objects, `/status` etc. appended to the resource).
 */
export function describeWrite(e: AuditEvent): string {
  const ref = e.objectRef ?? {};
  const resource = `${ref.apiGroup ? ref.apiGroup + '/' : ''}${ref.resource ?? '?'}${ref.subresource ? '/' + ref.subresource : ''}`;
  const name = ref.namespace && ref.resource !== 'namespaces' ? `${ref.namespace}/${ref.name ?? ''}` : (ref.name ?? '');
  return `${e.verb} ${resource} ${name} ${e.responseStatus?.code ?? '?'}`;
}

/**
 * Makes a marker request (a DELETE of a ConfigMap that does not exist, so nothing changes) and
 * waits until it appears in the audit log; returns the log's events at that point. Every write
 * whose response arrived before this call is then in the result.
 */
export async function syncAuditLog(kc: KubeConfig, auditLogPath: string, timeoutMs = 10_000): Promise<AuditEvent[]> {
  const marker = `${AUDIT_MARKER_PREFIX}${randomUUID()}`;
  try {
    await kc.makeApiClient(CoreV1Api).deleteNamespacedConfigMap({ name: marker, namespace: 'default' });
  } catch (err) {
    if ((err as { code?: number }).code !== 404) throw err;
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const events = await readAuditEvents(auditLogPath);
    if (events.some((e) => e.stage === 'ResponseComplete' && e.objectRef?.name === marker)) return events;
    if (Date.now() > deadline)
      throw new Error(`${auditLogPath}: audit marker ${marker} did not appear within ${timeoutMs} ms`);
    await sleep(20);
  }
}
