/**
 * The one catalogue of problem codes, shared by server and agent: every `code` of an error this
 * project throws and of a problem it reports (`status.errors[]`, `error.problems[]`, `agent list`,
 * log lines) is one of these. One casing, UPPER_SNAKE, the casing the server, its Git errors and
 * the docs already used. The wire keeps `code` a free (bounded) string, so a server still accepts
 * older agents that reported lower-case codes. Listed with their meaning in docs/protocol.md
 * ("Problem codes"); problems.test.ts fails when a code is thrown or reported that is not here.
 */

/** Codes by who raises them. The key is the code. */
export const ProblemCode = {
  // ---- agent: reading the manifests of a commit (nothing is applied) ----
  /** A manifest file is not valid YAML. */
  MANIFEST_SYNTAX: 'MANIFEST_SYNTAX',
  /** A document is not a Kubernetes object (no apiVersion, kind or metadata.name). */
  MANIFEST_INVALID_OBJECT: 'MANIFEST_INVALID_OBJECT',
  /** The same object twice in one file set (before namespace defaulting). */
  MANIFEST_DUPLICATE_OBJECT: 'MANIFEST_DUPLICATE_OBJECT',
  /** The API server does not serve the kind (its CRD is not installed). */
  UNKNOWN_KIND: 'UNKNOWN_KIND',
  /** A cluster-scoped object has metadata.namespace. */
  NAMESPACE_ON_CLUSTER_SCOPED: 'NAMESPACE_ON_CLUSTER_SCOPED',
  /** The same object twice once namespaces are defaulted. */
  DUPLICATE_OBJECT: 'DUPLICATE_OBJECT',
  /** API discovery failed; the commit is retried. */
  DISCOVERY_FAILED: 'DISCOVERY_FAILED',

  // ---- agent: applying ----
  /** One object could not be applied (the API server's code when it answered, e.g. KUBE_INVALID). */
  APPLY_FAILED: 'APPLY_FAILED',
  /** The apply as a whole failed before reporting per object. */
  APPLY_ERROR: 'APPLY_ERROR',
  /** One object could not be deleted by prune. */
  PRUNE_FAILED: 'PRUNE_FAILED',
  /** A delete-and-recreate waited too long for the old object to go. */
  RECREATE_TIMEOUT: 'RECREATE_TIMEOUT',
  /** An apply stopped because a newer commit arrived (never reported: the newer one is applied). */
  SUPERSEDED: 'SUPERSEDED',
  INVENTORY_READ_FAILED: 'INVENTORY_READ_FAILED',
  INVENTORY_WRITE_FAILED: 'INVENTORY_WRITE_FAILED',
  /** The inventory ConfigMap is not what this agent writes. */
  INVENTORY_CORRUPT: 'INVENTORY_CORRUPT',

  // ---- agent: the API server's answers (src/agent/kube/client.ts) ----
  KUBE_NOT_FOUND: 'KUBE_NOT_FOUND',
  KUBE_ALREADY_EXISTS: 'KUBE_ALREADY_EXISTS',
  KUBE_CONFLICT: 'KUBE_CONFLICT',
  KUBE_INVALID: 'KUBE_INVALID',
  KUBE_BAD_REQUEST: 'KUBE_BAD_REQUEST',
  KUBE_UNAUTHORIZED: 'KUBE_UNAUTHORIZED',
  KUBE_FORBIDDEN: 'KUBE_FORBIDDEN',
  KUBE_GONE: 'KUBE_GONE',
  KUBE_TOO_MANY_REQUESTS: 'KUBE_TOO_MANY_REQUESTS',
  /** Any other HTTP status from the API server. */
  KUBE_ERROR: 'KUBE_ERROR',
  /** The connection to the API server failed. */
  KUBE_CONNECTION: 'KUBE_CONNECTION',
  KUBE_WATCH_ERROR: 'KUBE_WATCH_ERROR',

  // ---- agent: start-up (exit status 2, never in a status) ----
  KUBE_TOKEN_UNREADABLE: 'KUBE_TOKEN_UNREADABLE',
  KUBE_CA_UNREADABLE: 'KUBE_CA_UNREADABLE',
  KUBE_NOT_IN_CLUSTER: 'KUBE_NOT_IN_CLUSTER',
  KUBECONFIG_UNREADABLE: 'KUBECONFIG_UNREADABLE',
  KUBECONFIG_INVALID: 'KUBECONFIG_INVALID',
  KUBECONFIG_NO_CLUSTER: 'KUBECONFIG_NO_CLUSTER',
  /** `gitops-agent apply/diff -f` names a path that does not exist. */
  INPUT_NOT_FOUND: 'INPUT_NOT_FOUND',
  /** Command-line options or environment are wrong (agent and server). */
  INVALID_OPTIONS: 'INVALID_OPTIONS',

  // ---- server: about an agent's reports ----
  /** The agent's status was cut to fit the message bound. */
  STATUS_TRUNCATED: 'STATUS_TRUNCATED',
  /** A status or drift report for a project the agent's config.yaml does not name. */
  REPORT_REFUSED: 'REPORT_REFUSED',

  // ---- server: an agent's config.yaml ----
  CONFIG_YAML_INVALID: 'CONFIG_YAML_INVALID',
  CONFIG_UNKNOWN_KEY: 'CONFIG_UNKNOWN_KEY',
  CONFIG_INVALID_VALUE: 'CONFIG_INVALID_VALUE',
  CONFIG_CHARTS_UNSUPPORTED: 'CONFIG_CHARTS_UNSUPPORTED',
  CONFIG_TOO_LARGE: 'CONFIG_TOO_LARGE',
  CONFIG_UNREADABLE: 'CONFIG_UNREADABLE',
  CONFIG_PROJECT_INVALID: 'CONFIG_PROJECT_INVALID',
  CONFIG_PROJECT_NOT_ALLOWED: 'CONFIG_PROJECT_NOT_ALLOWED',

  // ---- server: Git (src/server/git) ----
  /** Any Git failure without a more precise code. */
  GIT_ERROR: 'GIT_ERROR',
  /** A (project, ref) watched twice on one Git source: the Fleet shares one watch (a bug if it happens). */
  GIT_ALREADY_WATCHED: 'GIT_ALREADY_WATCHED',
  GIT_AUTH_FAILED: 'GIT_AUTH_FAILED',
  GIT_BAD_BASE_URL: 'GIT_BAD_BASE_URL',
  GIT_BAD_GLOB: 'GIT_BAD_GLOB',
  GIT_BAD_OBJECT_ID: 'GIT_BAD_OBJECT_ID',
  GIT_BAD_PROJECT_ID: 'GIT_BAD_PROJECT_ID',
  GIT_COMMIT_NOT_FOUND: 'GIT_COMMIT_NOT_FOUND',
  GIT_CORRUPT_OBJECT: 'GIT_CORRUPT_OBJECT',
  GIT_CREDENTIALS_IN_URL: 'GIT_CREDENTIALS_IN_URL',
  GIT_DELTA_BASE_TOO_LARGE: 'GIT_DELTA_BASE_TOO_LARGE',
  GIT_FETCH_FAILED: 'GIT_FETCH_FAILED',
  GIT_FILES_TOO_LARGE: 'GIT_FILES_TOO_LARGE',
  GIT_FILE_TOO_LARGE: 'GIT_FILE_TOO_LARGE',
  GIT_HOST_ERROR: 'GIT_HOST_ERROR',
  GIT_NOT_A_COMMIT: 'GIT_NOT_A_COMMIT',
  GIT_NO_CACHE_DIR: 'GIT_NO_CACHE_DIR',
  GIT_OBJECT_MISSING: 'GIT_OBJECT_MISSING',
  GIT_OBJECT_TOO_LARGE: 'GIT_OBJECT_TOO_LARGE',
  GIT_PACK_TOO_LARGE: 'GIT_PACK_TOO_LARGE',
  GIT_PATH_TOO_LONG: 'GIT_PATH_TOO_LONG',
  GIT_PROJECT_NOT_FOUND: 'GIT_PROJECT_NOT_FOUND',
  GIT_REF_MOVED: 'GIT_REF_MOVED',
  GIT_REF_NOT_FOUND: 'GIT_REF_NOT_FOUND',
  GIT_SOURCE_CLOSED: 'GIT_SOURCE_CLOSED',
  GIT_SOURCE_CONFLICT: 'GIT_SOURCE_CONFLICT',
  GIT_TIMEOUT: 'GIT_TIMEOUT',
  GIT_TREE_TOO_LARGE: 'GIT_TREE_TOO_LARGE',
  GIT_UNREACHABLE: 'GIT_UNREACHABLE',

  // ---- server: command line and state directory (exit status, never in a status) ----
  AGENT_BAD_ALLOW_PROJECT: 'AGENT_BAD_ALLOW_PROJECT',
  AGENT_BAD_NAME: 'AGENT_BAD_NAME',
  AGENT_BAD_PROJECT: 'AGENT_BAD_PROJECT',
  AGENT_EXISTS: 'AGENT_EXISTS',
  AGENT_NOT_ALLOWED: 'AGENT_NOT_ALLOWED',
  AGENT_NOT_FOUND: 'AGENT_NOT_FOUND',
  STATE_AGENTS_FILE_MISSING: 'STATE_AGENTS_FILE_MISSING',
  STATE_CORRUPT: 'STATE_CORRUPT',
  STATE_DIR_NOT_WRITABLE: 'STATE_DIR_NOT_WRITABLE',
  STATE_DIR_WORLD_WRITABLE: 'STATE_DIR_WORLD_WRITABLE',
  STATE_LOCKED: 'STATE_LOCKED',
  TLS_BAD_CERT: 'TLS_BAD_CERT',
  TLS_GENERATE_FAILED: 'TLS_GENERATE_FAILED',
  TOKEN_BAD_AGENT_ID: 'TOKEN_BAD_AGENT_ID',
  TOKEN_BAD_CHECKSUM: 'TOKEN_BAD_CHECKSUM',
  TOKEN_BAD_LENGTH: 'TOKEN_BAD_LENGTH',
  TOKEN_BAD_PREFIX: 'TOKEN_BAD_PREFIX',
  TOKEN_BAD_VERSION: 'TOKEN_BAD_VERSION',
} as const;

export type ProblemCode = (typeof ProblemCode)[keyof typeof ProblemCode];

const CODES: ReadonlySet<string> = new Set(Object.values(ProblemCode));

/** True for a code of this catalogue. */
export function isProblemCode(code: string): code is ProblemCode {
  return CODES.has(code);
}
