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

  // ---- agent: health and ordering (src/agent/health/, reconcile/depends-on.ts) ----
  /** A `config.kubernetes.io/depends-on` annotation that cannot be parsed. */
  DEPENDS_ON_INVALID: 'DEPENDS_ON_INVALID',
  /** depends-on names an object that is not in the commit's set. */
  DEPENDS_ON_UNKNOWN: 'DEPENDS_ON_UNKNOWN',
  /** depends-on annotations form a cycle (the objects are named). */
  DEPENDS_ON_CYCLE: 'DEPENDS_ON_CYCLE',
  /** An object was skipped because an object it depends on did not become current. */
  DEPENDENCY_NOT_READY: 'DEPENDENCY_NOT_READY',
  /** An applied object is failed (CrashLoopBackOff, a failed Job, ...): the commit is degraded. */
  HEALTH_DEGRADED: 'HEALTH_DEGRADED',
  /** reconcile_timeout (or prune_timeout) passed before every object was current (or gone). */
  HEALTH_TIMED_OUT: 'HEALTH_TIMED_OUT',
  /** The inventory ConfigMap could not be read; nothing was applied. */
  INVENTORY_READ_FAILED: 'INVENTORY_READ_FAILED',
  /** The inventory ConfigMap could not be written; the next sync retries. */
  INVENTORY_WRITE_FAILED: 'INVENTORY_WRITE_FAILED',
  /** The inventory ConfigMap is not what this agent writes. */
  INVENTORY_CORRUPT: 'INVENTORY_CORRUPT',

  // ---- agent: the API server's answers (src/agent/kube/client.ts) ----
  /** 404 from the API server. */
  KUBE_NOT_FOUND: 'KUBE_NOT_FOUND',
  /** 409 AlreadyExists from the API server. */
  KUBE_ALREADY_EXISTS: 'KUBE_ALREADY_EXISTS',
  /** 409 Conflict (a concurrent write) from the API server. */
  KUBE_CONFLICT: 'KUBE_CONFLICT',
  /** 422 Invalid: the API server refused the object (the message says which field). */
  KUBE_INVALID: 'KUBE_INVALID',
  /** 400 from the API server. */
  KUBE_BAD_REQUEST: 'KUBE_BAD_REQUEST',
  /** 401: the agent's credentials were refused. */
  KUBE_UNAUTHORIZED: 'KUBE_UNAUTHORIZED',
  /** 403: RBAC does not allow the agent this request. */
  KUBE_FORBIDDEN: 'KUBE_FORBIDDEN',
  /** 410: a watch fell too far behind (it re-lists). */
  KUBE_GONE: 'KUBE_GONE',
  /** 429 from the API server (retried). */
  KUBE_TOO_MANY_REQUESTS: 'KUBE_TOO_MANY_REQUESTS',
  /** Any other HTTP status from the API server. */
  KUBE_ERROR: 'KUBE_ERROR',
  /** The connection to the API server failed. */
  KUBE_CONNECTION: 'KUBE_CONNECTION',
  /** A watch ended with an error event. */
  KUBE_WATCH_ERROR: 'KUBE_WATCH_ERROR',

  // ---- agent: start-up (exit status 2, never in a status) ----
  /** The ServiceAccount token file cannot be read. */
  KUBE_TOKEN_UNREADABLE: 'KUBE_TOKEN_UNREADABLE',
  /** The cluster CA file cannot be read. */
  KUBE_CA_UNREADABLE: 'KUBE_CA_UNREADABLE',
  /** No kubeconfig, and not in a pod either. */
  KUBE_NOT_IN_CLUSTER: 'KUBE_NOT_IN_CLUSTER',
  /** A kubeconfig file (or a file it names) cannot be read. */
  KUBECONFIG_UNREADABLE: 'KUBECONFIG_UNREADABLE',
  /** A kubeconfig is not valid YAML or lacks what the agent needs. */
  KUBECONFIG_INVALID: 'KUBECONFIG_INVALID',
  /** The kubeconfig's current context names no usable cluster or user. */
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
  /** config.yaml is not valid YAML (file and line given). */
  CONFIG_YAML_INVALID: 'CONFIG_YAML_INVALID',
  /** config.yaml has a key GitLab does not define (or a typo of one). */
  CONFIG_UNKNOWN_KEY: 'CONFIG_UNKNOWN_KEY',
  /** A value in config.yaml is out of range or of the wrong type. */
  CONFIG_INVALID_VALUE: 'CONFIG_INVALID_VALUE',
  /** config.yaml uses `gitops.charts`, which this server does not render. */
  CONFIG_CHARTS_UNSUPPORTED: 'CONFIG_CHARTS_UNSUPPORTED',
  /** config.yaml is over GitLab's 128 KiB limit; not parsed. */
  CONFIG_TOO_LARGE: 'CONFIG_TOO_LARGE',
  /** config.yaml cannot be read from Git (the Git error's own code when it has one). */
  CONFIG_UNREADABLE: 'CONFIG_UNREADABLE',
  /** The agent's config project is not a GitLab project path. */
  CONFIG_PROJECT_INVALID: 'CONFIG_PROJECT_INVALID',
  /** A manifest project is not among the agent's allowed projects (`agent allow`). */
  CONFIG_PROJECT_NOT_ALLOWED: 'CONFIG_PROJECT_NOT_ALLOWED',
  /** A file is matched by two globs of one manifest project (GitLab refuses it): named at the glob's line. */
  CONFIG_GLOBS_OVERLAP: 'CONFIG_GLOBS_OVERLAP',

  // ---- server: Git (src/server/git) ----
  /** Any Git failure without a more precise code. */
  GIT_ERROR: 'GIT_ERROR',
  /** Reading a project's files at a commit failed. */
  GIT_READ_FAILED: 'GIT_READ_FAILED',
  /** Watching a project's ref failed. */
  GIT_WATCH_FAILED: 'GIT_WATCH_FAILED',
  /** A (project, ref) watched twice on one Git source: the Fleet shares one watch (a bug if it happens). */
  GIT_ALREADY_WATCHED: 'GIT_ALREADY_WATCHED',
  /** The Git host refused the credentials (401/403). */
  GIT_AUTH_FAILED: 'GIT_AUTH_FAILED',
  /** The Git base URL is not http(s). */
  GIT_BAD_BASE_URL: 'GIT_BAD_BASE_URL',
  /** A `paths[].glob` is not a valid glob. */
  GIT_BAD_GLOB: 'GIT_BAD_GLOB',
  /** Not a 40-hex Git object id. */
  GIT_BAD_OBJECT_ID: 'GIT_BAD_OBJECT_ID',
  /** Not a GitLab project path. */
  GIT_BAD_PROJECT_ID: 'GIT_BAD_PROJECT_ID',
  /** The commit is not in the repository. */
  GIT_COMMIT_NOT_FOUND: 'GIT_COMMIT_NOT_FOUND',
  /** A Git object failed to parse or verify. */
  GIT_CORRUPT_OBJECT: 'GIT_CORRUPT_OBJECT',
  /** The Git URL carries credentials: pass them separately. */
  GIT_CREDENTIALS_IN_URL: 'GIT_CREDENTIALS_IN_URL',
  /** A pack delta's base is over the object size bound. */
  GIT_DELTA_BASE_TOO_LARGE: 'GIT_DELTA_BASE_TOO_LARGE',
  /** A fetch from the Git host failed. */
  GIT_FETCH_FAILED: 'GIT_FETCH_FAILED',
  /** The matched files together are over the per-commit bound. */
  GIT_FILES_TOO_LARGE: 'GIT_FILES_TOO_LARGE',
  /** One file is over the size bound. */
  GIT_FILE_TOO_LARGE: 'GIT_FILE_TOO_LARGE',
  /** More than 1,000 files match the globs of one manifest project (GitLab's limit). */
  GIT_TOO_MANY_FILES: 'GIT_TOO_MANY_FILES',
  /** One file is matched by two globs of one manifest project (GitLab refuses it). */
  GIT_GLOBS_OVERLAP: 'GIT_GLOBS_OVERLAP',
  /** The Git host answered an unexpected HTTP status. */
  GIT_HOST_ERROR: 'GIT_HOST_ERROR',
  /** The ref points at something other than a commit. */
  GIT_NOT_A_COMMIT: 'GIT_NOT_A_COMMIT',
  /** A Git base URL was given without a cache folder for clones. */
  GIT_NO_CACHE_DIR: 'GIT_NO_CACHE_DIR',
  /** A Git object the commit needs is not in the pack. */
  GIT_OBJECT_MISSING: 'GIT_OBJECT_MISSING',
  /** One Git object is over the size bound. */
  GIT_OBJECT_TOO_LARGE: 'GIT_OBJECT_TOO_LARGE',
  /** The fetched pack is over the size bound. */
  GIT_PACK_TOO_LARGE: 'GIT_PACK_TOO_LARGE',
  /** A path in the tree is over the length bound. */
  GIT_PATH_TOO_LONG: 'GIT_PATH_TOO_LONG',
  /** The Git host has no such project (404). */
  GIT_PROJECT_NOT_FOUND: 'GIT_PROJECT_NOT_FOUND',
  /** The ref moved while it was being read (retried). */
  GIT_REF_MOVED: 'GIT_REF_MOVED',
  /** The branch or tag does not exist. */
  GIT_REF_NOT_FOUND: 'GIT_REF_NOT_FOUND',
  /** The Git source was closed (server stopping). */
  GIT_SOURCE_CLOSED: 'GIT_SOURCE_CLOSED',
  /** Both a Git base URL and a local Git root were given (give exactly one). */
  GIT_SOURCE_CONFLICT: 'GIT_SOURCE_CONFLICT',
  /** The Git host did not answer in time. */
  GIT_TIMEOUT: 'GIT_TIMEOUT',
  /** The tree has more entries than the bound. */
  GIT_TREE_TOO_LARGE: 'GIT_TREE_TOO_LARGE',
  /** The Git host cannot be reached. */
  GIT_UNREACHABLE: 'GIT_UNREACHABLE',

  // ---- server: command line and state directory (exit status, never in a status) ----
  /** `agent create --allow-project` is not a project path or glob. */
  AGENT_BAD_ALLOW_PROJECT: 'AGENT_BAD_ALLOW_PROJECT',
  /** Not a valid agent name. */
  AGENT_BAD_NAME: 'AGENT_BAD_NAME',
  /** `--config-project` is not a project path. */
  AGENT_BAD_PROJECT: 'AGENT_BAD_PROJECT',
  /** An agent of that name exists already. */
  AGENT_EXISTS: 'AGENT_EXISTS',
  /** `agent allow --disallow` names a project the agent is not allowed. */
  AGENT_NOT_ALLOWED: 'AGENT_NOT_ALLOWED',
  /** No agent of that name or id. */
  AGENT_NOT_FOUND: 'AGENT_NOT_FOUND',
  /** The state dir has no agents.json. */
  STATE_AGENTS_FILE_MISSING: 'STATE_AGENTS_FILE_MISSING',
  /** A state file is not what the server writes. */
  STATE_CORRUPT: 'STATE_CORRUPT',
  /** The state dir cannot be written. */
  STATE_DIR_NOT_WRITABLE: 'STATE_DIR_NOT_WRITABLE',
  /** The state dir is writable by others: refused. */
  STATE_DIR_WORLD_WRITABLE: 'STATE_DIR_WORLD_WRITABLE',
  /** Another server process holds the state dir. */
  STATE_LOCKED: 'STATE_LOCKED',
  /** The TLS certificate or key cannot be used. */
  TLS_BAD_CERT: 'TLS_BAD_CERT',
  /** Generating the self-signed certificate failed. */
  TLS_GENERATE_FAILED: 'TLS_GENERATE_FAILED',
  /** An agent token with a malformed agent id. */
  TOKEN_BAD_AGENT_ID: 'TOKEN_BAD_AGENT_ID',
  /** An agent token whose checksum does not match (a typo or a cut copy). */
  TOKEN_BAD_CHECKSUM: 'TOKEN_BAD_CHECKSUM',
  /** An agent token of the wrong length. */
  TOKEN_BAD_LENGTH: 'TOKEN_BAD_LENGTH',
  /** Not an agent token (`gitops_agent_…`). */
  TOKEN_BAD_PREFIX: 'TOKEN_BAD_PREFIX',
  /** An agent token of an unknown format version. */
  TOKEN_BAD_VERSION: 'TOKEN_BAD_VERSION',
} as const;

export type ProblemCode = (typeof ProblemCode)[keyof typeof ProblemCode];

const CODES: ReadonlySet<string> = new Set(Object.values(ProblemCode));

/** True for a code of this catalogue. */
export function isProblemCode(code: string): code is ProblemCode {
  return CODES.has(code);
}
