/**
 * Wire protocol between gitops-server and gitops-agent: JSON text frames over one WebSocket per
 * agent connection. Every frame is validated with these schemas on receipt; anything else is a
 * protocol error (close code INVALID_MESSAGE). See docs/protocol.md for the prose version.
 *
 * Agent frames are tenant input: every string and array in them has a bound (AGENT_LIMITS) and a
 * frame is at most MAX_AGENT_MESSAGE_BYTES. `fitReport` is how the agent stays within both: it
 * shortens strings and, when a status, health or drift report would be too big, sends the first
 * entries that fit and says how many there were (`truncated`).
 *
 * Versions: the agent says its version in hello; the server accepts SUPPORTED_PROTOCOL_VERSIONS
 * and remembers it per session. Version 2 adds `health` and `config.protocolVersion`; the server
 * sends the latter only to v2 sessions, because a v1 agent's strict schema refuses any new field.
 */
import { z } from 'zod';
import {
  ACTIONS,
  APPLY_RESULTS,
  DRIFT_MODES,
  DRY_RUN_STRATEGIES,
  HEALTH_RESULTS,
  HEALTH_STATES,
  INVENTORY_POLICIES,
  PROPAGATION_POLICIES,
  type Action,
  type HealthState,
} from './vocabulary.js';

/**
 * The version this code speaks first. 2 added the `health` frame (agent → server) and
 * `config.protocolVersion` (server → a v2 agent); everything of version 1 is unchanged.
 */
export const PROTOCOL_VERSION = 2;
/** Versions the server accepts in hello: a fleet upgrades agent by agent, after the server. */
export const SUPPORTED_PROTOCOL_VERSIONS: readonly number[] = [1, 2];
/** WebSocket path agents connect to. */
export const CONNECT_PATH = '/api/v1/agent/connect';
/**
 * Largest server → agent frame (`desired` carries manifests): the agent's ws `maxPayload`. A
 * larger one closes with MESSAGE_TOO_BIG.
 */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/**
 * Largest agent → server frame (hello, status, drift): the server's ws `maxPayload`. A larger one
 * closes the session with MESSAGE_TOO_BIG before it is buffered.
 */
export const MAX_AGENT_MESSAGE_BYTES = 1024 * 1024;

/** Bounds on every string and array an agent sends (documented in docs/protocol.md). */
export const AGENT_LIMITS = {
  /** Manifest project id (GitLab's full path is at most 255 characters). */
  project: 255,
  /** Object id `Kind/namespace/name` (with group), messages' `object`. */
  objectId: 1024,
  /** A problem's or a change's message. */
  message: 4096,
  /** A problem code. */
  code: 100,
  /** A problem's file. */
  file: 1024,
  /** agentVersion, digest, manager, timestamps, a health `reason`. */
  short: 256,
  /** Entries in status `changes`, and in health `objects`. */
  changes: 10_000,
  /** Entries in status `errors`. */
  errors: 100,
  /** Projects in hello `applied`. */
  appliedProjects: 1000,
  /** Operations in a drift `patch`. */
  patchOps: 1000,
} as const;
/** Close codes (4000-4999 are free for applications in RFC 6455). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  MESSAGE_TOO_BIG: 1009,
  UNAUTHORIZED: 4001,
  VERSION_MISMATCH: 4002,
  REVOKED: 4003,
  INVALID_MESSAGE: 4004,
  /** The agent opened more sessions than the server allows per agent: its oldest one is closed. */
  SESSION_REPLACED: 4005,
} as const;
export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode];

const sha = z.string().regex(/^[0-9a-f]{40,64}$/, 'a hex commit id');

export const DriftIgnoreRule = z.strictObject({
  group: z.string().optional(),
  kind: z.string().optional(),
  namespace: z.string().optional(),
  name: z.string().optional(),
  /** JSON pointers (RFC 6901) into the object, e.g. `/spec/replicas`. */
  paths: z.array(z.string().startsWith('/')).min(1),
});
export type DriftIgnoreRule = z.infer<typeof DriftIgnoreRule>;

export const DriftConfig = z.strictObject({
  mode: z.enum(DRIFT_MODES),
  ignore: z.array(DriftIgnoreRule),
});
export type DriftConfig = z.infer<typeof DriftConfig>;

/** One manifest project's settings, resolved with GitLab's defaults by the server. */
export const ManifestProjectConfig = z.strictObject({
  id: z.string().min(1),
  ref: z.union([
    z.strictObject({ branch: z.string() }),
    z.strictObject({ tag: z.string() }),
    z.strictObject({ commit: z.string() }),
    z.strictObject({}),
  ]),
  defaultNamespace: z.string().min(1),
  paths: z.array(z.strictObject({ glob: z.string() })),
  reconcileTimeoutMs: z.number().nonnegative(),
  dryRunStrategy: z.enum(DRY_RUN_STRATEGIES),
  prune: z.boolean(),
  pruneTimeoutMs: z.number().nonnegative(),
  prunePropagationPolicy: z.enum(PROPAGATION_POLICIES),
  inventoryPolicy: z.enum(INVENTORY_POLICIES),
});
export type ManifestProjectConfig = z.infer<typeof ManifestProjectConfig>;

/** Agent-wide settings from config.yaml that the agent itself acts on. */
export const AgentSettings = z.strictObject({
  logLevel: z.enum(['debug', 'info', 'warn', 'error']).optional(),
  drift: DriftConfig,
});
export type AgentSettings = z.infer<typeof AgentSettings>;

export const ManifestFile = z.strictObject({ path: z.string().min(1), content: z.string() });
export type ManifestFile = z.infer<typeof ManifestFile>;

export const ProblemReport = z.strictObject({
  code: z.string(),
  message: z.string(),
  file: z.string().optional(),
  line: z.number().int().optional(),
  object: z.string().optional(),
});
export type ProblemReport = z.infer<typeof ProblemReport>;

// ---- agent → server ----

const bounded = (max: number): z.ZodString => z.string().max(max);
const projectKey = z.string().min(1).max(AGENT_LIMITS.project);

/** A problem as an agent reports it: ProblemReport with every string bounded. */
export const AgentProblemReport = z.strictObject({
  code: bounded(AGENT_LIMITS.code),
  message: bounded(AGENT_LIMITS.message),
  file: bounded(AGENT_LIMITS.file).optional(),
  line: z.number().int().optional(),
  object: bounded(AGENT_LIMITS.objectId).optional(),
});

export const HelloMessage = z.strictObject({
  type: z.literal('hello'),
  protocolVersion: z.number().int(),
  agentVersion: bounded(AGENT_LIMITS.short),
  /** Last commit applied (or being enforced) per manifest project id, with its digest. */
  applied: z
    .record(projectKey, z.strictObject({ commit: sha, digest: bounded(AGENT_LIMITS.short) }))
    .refine(
      (r) => Object.keys(r).length <= AGENT_LIMITS.appliedProjects,
      `at most ${AGENT_LIMITS.appliedProjects} projects`,
    ),
});

const count = z.number().int().nonnegative();

export const StatusMessage = z.strictObject({
  type: z.literal('status'),
  project: projectKey,
  commit: sha,
  digest: bounded(AGENT_LIMITS.short),
  result: z.enum(APPLY_RESULTS),
  changes: z
    .array(
      z.strictObject({
        id: bounded(AGENT_LIMITS.objectId),
        action: z.enum(ACTIONS),
        error: bounded(AGENT_LIMITS.message).optional(),
        /**
         * Version 2: the problem code of a failed or skipped object (`KUBE_INVALID`,
         * `DEPENDS_ON_CYCLE`, ...); the server says APPLY_FAILED without it.
         */
        code: bounded(AGENT_LIMITS.code).optional(),
      }),
    )
    .max(AGENT_LIMITS.changes),
  errors: z.array(AgentProblemReport).max(AGENT_LIMITS.errors),
  durationMs: z.number().nonnegative(),
  /**
   * Present when the report was cut to fit the limits: `changes` then holds failed and skipped
   * objects first and as many others as fit; these are the totals of the whole apply.
   */
  truncated: z
    .strictObject({
      changes: count,
      errors: count,
      /** Objects per action over the whole apply (actions with none left out). */
      counts: z.strictObject({
        created: count.optional(),
        configured: count.optional(),
        unchanged: count.optional(),
        pruned: count.optional(),
        skipped: count.optional(),
        failed: count.optional(),
      }),
    })
    .optional(),
});

export const DriftMessage = z.strictObject({
  type: z.literal('drift'),
  project: projectKey,
  commit: sha,
  object: bounded(AGENT_LIMITS.objectId),
  action: z.enum(['reverted', 'recreated', 'detected', 'fight']),
  /** The JSON patch that took the live object back to Git (values of Secrets masked). */
  patch: z.array(z.record(bounded(AGENT_LIMITS.short), z.unknown())).max(AGENT_LIMITS.patchOps),
  /** Present when the patch was cut to fit: the number of operations it had. */
  truncated: z.strictObject({ patchOps: count }).optional(),
  /** Field manager that made the change, from managedFields, when known. */
  manager: bounded(AGENT_LIMITS.short).optional(),
  at: bounded(AGENT_LIMITS.short),
});

/** Objects per health state over a whole report (states with none left out). */
const HealthCounts = z.strictObject(
  Object.fromEntries(HEALTH_STATES.map((state) => [state, count.optional()])) as Record<
    HealthState,
    z.ZodOptional<typeof count>
  >,
);

/**
 * Version 2: a commit's health after its apply (and each later change of it), for one project.
 * `objects` lists the followed objects, failed first; a session that said version 1 in hello may
 * not send it (INVALID_MESSAGE).
 */
export const HealthMessage = z.strictObject({
  type: z.literal('health'),
  project: projectKey,
  commit: sha,
  digest: bounded(AGENT_LIMITS.short),
  result: z.enum(HEALTH_RESULTS),
  objects: z
    .array(
      z.strictObject({
        id: bounded(AGENT_LIMITS.objectId),
        state: z.enum(HEALTH_STATES),
        /** Short cause: `Available`, `ImagePullBackOff`, `BackoffLimitExceeded`. */
        reason: bounded(AGENT_LIMITS.short).optional(),
        /** For people: "2/3 replicas available". */
        message: bounded(AGENT_LIMITS.message).optional(),
        /** An object this commit pruned, followed until it is gone. */
        pruned: z.boolean().optional(),
      }),
    )
    .max(AGENT_LIMITS.changes),
  /** Milliseconds from the end of the apply to the result (absent while progressing). */
  waitedMs: z.number().nonnegative().optional(),
  /**
   * Present when the report was cut to fit: `objects` then holds failed objects first, then
   * in_progress ones, then as many others as fit; these are the totals of the whole report.
   */
  truncated: z.strictObject({ objects: count, counts: HealthCounts }).optional(),
});

export const AgentMessage = z.discriminatedUnion('type', [HelloMessage, StatusMessage, DriftMessage, HealthMessage]);
export type HelloMessage = z.infer<typeof HelloMessage>;
export type StatusMessage = z.infer<typeof StatusMessage>;
export type DriftMessage = z.infer<typeof DriftMessage>;
export type HealthMessage = z.infer<typeof HealthMessage>;
export type HealthObject = HealthMessage['objects'][number];
export type AgentMessage = z.infer<typeof AgentMessage>;

// ---- server → agent ----

/** Sent after hello and whenever the agent's config.yaml changes. */
export const ConfigMessage = z.strictObject({
  type: z.literal('config'),
  settings: AgentSettings,
  projects: z.array(z.string()),
  /** Problems with the latest config.yaml; when present the settings are the last valid ones. */
  errors: z.array(ProblemReport),
  /**
   * Version 2: the version this session speaks, sent only to agents that said 2 in hello (a
   * v1 agent's strict schema refuses the field). Absent: the server speaks version 1.
   */
  protocolVersion: z.number().int().positive().optional(),
});

export const DesiredMessage = z.strictObject({
  type: z.literal('desired'),
  project: z.string(),
  commit: sha,
  /** sha256 over files and config: the agent reports it back so the server knows it is current. */
  digest: z.string(),
  config: ManifestProjectConfig,
  files: z.array(ManifestFile),
});

/**
 * A problem on the server side for one project (unreadable Git, bad files): the agent reports it.
 * An empty `problems` list for a project says that project's problem cleared.
 */
export const ErrorMessage = z.strictObject({
  type: z.literal('error'),
  project: z.string().optional(),
  problems: z.array(ProblemReport),
});

export const ServerMessage = z.discriminatedUnion('type', [ConfigMessage, DesiredMessage, ErrorMessage]);
export type ConfigMessage = z.infer<typeof ConfigMessage>;
export type DesiredMessage = z.infer<typeof DesiredMessage>;
export type ErrorMessage = z.infer<typeof ErrorMessage>;
export type ServerMessage = z.infer<typeof ServerMessage>;

export type DecodeResult<T> = { ok: true; message: T } | { ok: false; error: string };

function decodeWith<T>(schema: z.ZodType<T>, data: string): DecodeResult<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(data);
  } catch (err) {
    return { ok: false, error: `not JSON: ${(err as Error).message}` };
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    return {
      ok: false,
      error: parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '),
    };
  }
  return { ok: true, message: parsed.data };
}

export const decodeAgentMessage = (data: string): DecodeResult<AgentMessage> => decodeWith(AgentMessage, data);
export const decodeServerMessage = (data: string): DecodeResult<ServerMessage> => decodeWith(ServerMessage, data);
export const encodeMessage = (message: AgentMessage | ServerMessage): string => JSON.stringify(message);

/**
 * Whether a session that said `version` in hello may send this frame: `health` and a status
 * change's `code` need 2 (each side sends only what its version defines).
 */
export function allowedInVersion(message: AgentMessage, version: number): boolean {
  if (version >= 2) return true;
  if (message.type === 'health') return false;
  return message.type !== 'status' || message.changes.every((c) => c.code === undefined);
}

/** A status as version 1 defined it: without the changes' codes (for a session that said 1). */
export function statusForVersion1(status: StatusMessage): StatusMessage {
  if (status.changes.every((c) => c.code === undefined)) return status;
  return { ...status, changes: status.changes.map(({ code: _v2, ...change }) => change) };
}

// ---- agent side: keeping reports within the limits ----

const clip = (text: string, max: number): string => (text.length <= max ? text : text.slice(0, max - 1) + '…');
const bytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value), 'utf8');

function clipProblem(p: z.infer<typeof AgentProblemReport> | ProblemReport): z.infer<typeof AgentProblemReport> {
  return {
    code: clip(p.code, AGENT_LIMITS.code),
    message: clip(p.message, AGENT_LIMITS.message),
    ...(p.file !== undefined ? { file: clip(p.file, AGENT_LIMITS.file) } : {}),
    ...(p.line !== undefined ? { line: p.line } : {}),
    ...(p.object !== undefined ? { object: clip(p.object, AGENT_LIMITS.objectId) } : {}),
  };
}

/**
 * The longest prefix of `items` that, put in place of `[]` in a message of `baseBytes` encoded
 * bytes, keeps it within `maxBytes` (JSON arrays are `[` items joined by `,` `]`).
 */
function fittingCount(items: readonly unknown[], baseBytes: number, maxBytes: number, maxItems: number): number {
  let total = baseBytes;
  let n = 0;
  for (; n < items.length && n < maxItems; n++) {
    total += bytes(items[n]) + (n > 0 ? 1 : 0);
    if (total > maxBytes) break;
  }
  return n;
}

/**
 * A status, health or drift report shortened to the protocol's limits: strings clipped, and when
 * the lists would make the frame bigger than `maxBytes` (or longer than the limits), a shorter
 * list with `truncated` giving the totals. Failed (and skipped, or in_progress) objects are kept
 * first, because they are what a person needs to see. A report within the limits is returned as
 * it is.
 */
export function fitReport<T extends StatusMessage | DriftMessage | HealthMessage>(
  report: T,
  maxBytes = MAX_AGENT_MESSAGE_BYTES,
): T {
  switch (report.type) {
    case 'status':
      return fitStatus(report, maxBytes) as T;
    case 'health':
      return fitHealth(report, maxBytes) as T;
    default:
      return fitDrift(report as DriftMessage, maxBytes) as T;
  }
}

/** Order in which a cut health report keeps objects: what is wrong, then what is not there yet. */
const HEALTH_KEEP_FIRST: readonly HealthState[] = ['failed', 'in_progress'];

function fitHealth(health: HealthMessage, maxBytes: number): HealthMessage {
  const objects = health.objects.map((o) => ({
    id: clip(o.id, AGENT_LIMITS.objectId),
    state: o.state,
    ...(o.reason !== undefined ? { reason: clip(o.reason, AGENT_LIMITS.short) } : {}),
    ...(o.message !== undefined ? { message: clip(o.message, AGENT_LIMITS.message) } : {}),
    ...(o.pruned !== undefined ? { pruned: o.pruned } : {}),
  }));
  const base: HealthMessage = {
    ...health,
    project: clip(health.project, AGENT_LIMITS.project),
    digest: clip(health.digest, AGENT_LIMITS.short),
    objects,
  };
  delete base.truncated;
  if (objects.length <= AGENT_LIMITS.changes && bytes(base) <= maxBytes) return base;

  const counts: Partial<Record<HealthState, number>> = {};
  for (const o of objects) counts[o.state] = (counts[o.state] ?? 0) + 1;
  const rank = (s: HealthState): number => {
    const i = HEALTH_KEEP_FIRST.indexOf(s);
    return i < 0 ? HEALTH_KEEP_FIRST.length : i;
  };
  // A stable sort: within a state the agent's own order stays.
  const ordered = objects.map((o, i) => ({ o, i })).sort((a, b) => rank(a.o.state) - rank(b.o.state) || a.i - b.i);
  const empty: HealthMessage = { ...base, objects: [], truncated: { objects: objects.length, counts } };
  const n = fittingCount(
    ordered.map((x) => x.o),
    bytes(empty) - 2,
    maxBytes - 2,
    AGENT_LIMITS.changes,
  );
  return { ...empty, objects: ordered.slice(0, n).map((x) => x.o) };
}

function fitStatus(status: StatusMessage, maxBytes: number): StatusMessage {
  const changes = status.changes.map((c) => ({
    id: clip(c.id, AGENT_LIMITS.objectId),
    action: c.action,
    ...(c.error !== undefined ? { error: clip(c.error, AGENT_LIMITS.message) } : {}),
    ...(c.code !== undefined ? { code: clip(c.code, AGENT_LIMITS.code) } : {}),
  }));
  const base: StatusMessage = {
    ...status,
    project: clip(status.project, AGENT_LIMITS.project),
    digest: clip(status.digest, AGENT_LIMITS.short),
    changes,
    errors: status.errors.slice(0, AGENT_LIMITS.errors).map(clipProblem),
  };
  delete base.truncated;
  if (changes.length <= AGENT_LIMITS.changes && status.errors.length <= AGENT_LIMITS.errors && bytes(base) <= maxBytes)
    return base;

  const counts: Partial<Record<Action, number>> = {};
  for (const c of changes) counts[c.action] = (counts[c.action] ?? 0) + 1;
  const truncated = { changes: changes.length, errors: status.errors.length, counts };
  const important = (a: string): boolean => a === 'failed' || a === 'skipped';
  const ordered = [...changes.filter((c) => important(c.action)), ...changes.filter((c) => !important(c.action))];
  // Errors first (they fit in any sane budget: 100 of at most ~5 KiB), then as many changes as fit.
  let errors = base.errors;
  const withoutChanges = (): StatusMessage => ({ ...base, errors, changes: [], truncated });
  const emptyBytes = (): number => bytes(withoutChanges()) - 2;
  if (emptyBytes() + 2 > maxBytes)
    errors = errors.slice(
      0,
      fittingCount(errors, bytes({ ...withoutChanges(), errors: [] }) - 2, maxBytes - 2, AGENT_LIMITS.errors),
    );
  const n = fittingCount(ordered, emptyBytes(), maxBytes - 2, AGENT_LIMITS.changes);
  return { ...withoutChanges(), changes: ordered.slice(0, n) };
}

function fitDrift(drift: DriftMessage, maxBytes: number): DriftMessage {
  const base: DriftMessage = {
    ...drift,
    project: clip(drift.project, AGENT_LIMITS.project),
    object: clip(drift.object, AGENT_LIMITS.objectId),
    at: clip(drift.at, AGENT_LIMITS.short),
    ...(drift.manager !== undefined ? { manager: clip(drift.manager, AGENT_LIMITS.short) } : {}),
  };
  delete base.truncated;
  if (drift.patch.length <= AGENT_LIMITS.patchOps && bytes(base) <= maxBytes) return base;
  const truncated = { patchOps: drift.patch.length };
  const empty = { ...base, patch: [], truncated };
  const n = fittingCount(drift.patch, bytes(empty) - 2, maxBytes - 2, AGENT_LIMITS.patchOps);
  return { ...empty, patch: drift.patch.slice(0, n) };
}
