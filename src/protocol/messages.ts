/**
 * Wire protocol between gitops-server and gitops-agent: JSON text frames over one WebSocket per
 * agent connection. Every frame is validated with these schemas on receipt; anything else is a
 * protocol error (close code INVALID_MESSAGE). See docs/protocol.md for the prose version.
 */
import { z } from 'zod';

export const PROTOCOL_VERSION = 1;
/** WebSocket path agents connect to. */
export const CONNECT_PATH = '/api/v1/agent/connect';
/** Largest frame either side accepts (ws `maxPayload`); a larger one closes with MESSAGE_TOO_BIG. */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Close codes (4000-4999 are free for applications in RFC 6455). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  MESSAGE_TOO_BIG: 1009,
  UNAUTHORIZED: 4001,
  VERSION_MISMATCH: 4002,
  REVOKED: 4003,
  INVALID_MESSAGE: 4004,
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
  mode: z.enum(['correct', 'detect', 'off']),
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
  dryRunStrategy: z.enum(['none', 'client', 'server']),
  prune: z.boolean(),
  pruneTimeoutMs: z.number().nonnegative(),
  prunePropagationPolicy: z.enum(['foreground', 'background', 'orphan']),
  inventoryPolicy: z.enum(['must_match', 'adopt_if_no_inventory', 'adopt_all']),
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

export const HelloMessage = z.strictObject({
  type: z.literal('hello'),
  protocolVersion: z.number().int(),
  agentVersion: z.string(),
  /** Last commit applied (or being enforced) per manifest project id, with its digest. */
  applied: z.record(z.string(), z.strictObject({ commit: sha, digest: z.string() })),
});

export const StatusMessage = z.strictObject({
  type: z.literal('status'),
  project: z.string(),
  commit: sha,
  digest: z.string(),
  result: z.enum(['applied', 'failed', 'partial']),
  changes: z.array(z.strictObject({ id: z.string(), action: z.enum(['created', 'configured', 'unchanged', 'pruned', 'skipped', 'failed']), error: z.string().optional() })),
  errors: z.array(ProblemReport),
  durationMs: z.number().nonnegative(),
});

export const DriftMessage = z.strictObject({
  type: z.literal('drift'),
  project: z.string(),
  commit: sha,
  object: z.string(),
  action: z.enum(['reverted', 'recreated', 'detected', 'fight']),
  /** The JSON patch that took the live object back to Git (values of Secrets masked). */
  patch: z.array(z.record(z.string(), z.unknown())),
  /** Field manager that made the change, from managedFields, when known. */
  manager: z.string().optional(),
  at: z.string(),
});

export const AgentMessage = z.discriminatedUnion('type', [HelloMessage, StatusMessage, DriftMessage]);
export type HelloMessage = z.infer<typeof HelloMessage>;
export type StatusMessage = z.infer<typeof StatusMessage>;
export type DriftMessage = z.infer<typeof DriftMessage>;
export type AgentMessage = z.infer<typeof AgentMessage>;

// ---- server → agent ----

/** Sent after hello and whenever the agent's config.yaml changes. */
export const ConfigMessage = z.strictObject({
  type: z.literal('config'),
  settings: AgentSettings,
  projects: z.array(z.string()),
  /** Problems with the latest config.yaml; when present the settings are the last valid ones. */
  errors: z.array(ProblemReport),
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
    return { ok: false, error: parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ') };
  }
  return { ok: true, message: parsed.data };
}

export const decodeAgentMessage = (data: string): DecodeResult<AgentMessage> => decodeWith(AgentMessage, data);
export const decodeServerMessage = (data: string): DecodeResult<ServerMessage> => decodeWith(ServerMessage, data);
export const encodeMessage = (message: AgentMessage | ServerMessage): string => JSON.stringify(message);
