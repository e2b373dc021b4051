/**
 * GitLab's agent configuration schema, key by key, as GitLab v16.5 defined it: the messages of
 * `pkg/agentcfg/agentcfg.proto` (gitlab-agent, upstream master of 2023-10-16, the last upstream
 * commit in the public mirror pluralsh/kubernetes-agent before its fork, matching the v16.5
 * release) with the rules of its protoc-gen-validate annotations, and the JSON forms protojson
 * accepts for each type. Pure data; validate.ts walks it. Defaults are agentk's (see
 * MANIFEST_PROJECT_DEFAULTS in ../config.ts).
 *
 * Besides GitLab's rules, a few bounds of this product's own (`max`, `check`): a tenant's file
 * must not make the server hold unbounded lists and strings, and ids and ref names are checked
 * before they get near a URL or a file path. `gitops.drift` is this product's extension.
 */
import { INVENTORY_POLICIES } from '../../protocol/vocabulary.js';
import { projectIdProblem, quoteId } from '../project-id.js';

/** What one key may hold. `null` is "not set" for every key, as protojson reads it. */
export type Spec =
  /** `optional`: proto3 `optional`, so leaving it out is not the same as "" (which minBytes refuses). */
  | {
      t: 'string';
      minBytes?: number;
      optional?: boolean;
      max?: number;
      in?: readonly string[];
      check?: (v: string) => string | undefined;
    }
  | { t: 'bool' }
  /** google.protobuf.Duration: a string of seconds ending in `s` (`3600s`, `1.5s`). */
  | { t: 'duration'; positive?: boolean }
  /** A proto enum: one of the names, or its number. */
  | { t: 'enum'; values: readonly string[] }
  | { t: 'list'; of: Spec; max?: number; minItems?: number }
  | { t: 'message'; fields: Record<string, Spec>; oneofs?: readonly Oneof[]; removed?: Record<string, string> };

/** Keys of a message of which at most one may be set (`required`: exactly one). */
export interface Oneof {
  members: readonly string[];
  required: boolean;
}

/** This product's bounds (documented in docs/configuration.md). */
export const SCHEMA_LIMITS = {
  manifestProjects: 100,
  /** GitLab's kas: "maximum number of GitOps paths per manifest project is 100". */
  pathsPerProject: 100,
  /** Same as the glob engine's MAX_GLOB_LENGTH (git/globs.ts). */
  globLength: 1024,
  /** Git's own limit for a ref name is the file system's (255 bytes per component). */
  refNameLength: 255,
  /** 64 hex digits: a SHA-256 commit id. */
  commitLength: 64,
  driftRules: 100,
  pathsPerDriftRule: 100,
  jsonPointerLength: 1024,
  /** API group, kind, object name (a Kubernetes DNS subdomain is at most 253). */
  selectorLength: 253,
  /** A Kubernetes namespace is a DNS label. */
  namespaceLength: 63,
  /** Any other string (GitLab has none; this keeps a 128 KiB file from being one string held many times). */
  text: 4096,
  /** Any other list. */
  items: 1000,
} as const;
const L = SCHEMA_LIMITS;

/**
 * Why `name` cannot be a Git branch or tag name (git check-ref-format, and nothing that reads as an
 * option or a path), or undefined.
 */
export function refNameProblem(name: string): string | undefined {
  if (name === '') return 'must not be empty';
  if (name.length > L.refNameLength)
    return `must be at most ${L.refNameLength} characters (this one has ${name.length})`;
  if (/[\x00-\x20\x7f~^:?*[\\]/.test(name))
    return 'must not contain spaces, control characters or any of ~ ^ : ? * [ \\';
  if (name.includes('..')) return "must not contain '..'";
  if (name.includes('@{') || name === '@') return "must not contain '@{' or be '@'";
  if (name.startsWith('-')) return "must not start with '-'";
  if (name.startsWith('/') || name.endsWith('/') || name.includes('//'))
    return "must not start or end with '/' or contain '//'";
  if (name.endsWith('.')) return "must not end in '.'";
  if (name.split('/').some((c) => c.startsWith('.') || c.endsWith('.lock')))
    return "no part between '/' may start with '.' or end in '.lock'";
  return undefined;
}

const refName = (v: string): string | undefined => {
  const problem = refNameProblem(v);
  return problem && `${quoteId(v)} is not a valid Git ref name: ${problem}`;
};

const projectPath = (v: string): string | undefined => {
  const problem = projectIdProblem(v);
  return problem && `${quoteId(v)} is not a GitLab project path: ${problem}; write it as group/name`;
};

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const namespaceName = (v: string): string | undefined =>
  v === '' || (v.length <= L.namespaceLength && DNS_LABEL.test(v))
    ? undefined
    : `${quoteId(v)} is not a Kubernetes namespace name: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`;

const commitId = (v: string): string | undefined =>
  /^[0-9a-fA-F]{4,64}$/.test(v)
    ? undefined
    : `${quoteId(v)} is not a commit id: write 4 to 64 hex digits (a full or abbreviated SHA)`;

const str = (extra: Omit<Extract<Spec, { t: 'string' }>, 't'> = {}): Spec => ({ t: 'string', max: L.text, ...extra });
const list = (of: Spec, extra: Omit<Extract<Spec, { t: 'list' }>, 't' | 'of'> = {}): Spec => ({
  t: 'list',
  of,
  max: L.items,
  ...extra,
});
const message = (
  fields: Record<string, Spec>,
  more: Omit<Extract<Spec, { t: 'message' }>, 't' | 'fields'> = {},
): Spec => ({ t: 'message', fields, ...more });
const empty = message({});

const gitRef = message(
  {
    tag: str({ minBytes: 1, check: refName }),
    branch: str({ minBytes: 1, check: refName }),
    commit: str({ minBytes: 1, check: commitId }),
  },
  { oneofs: [{ members: ['branch', 'tag', 'commit'], required: true }] },
);

const manifestProject = message({
  id: str({ minBytes: 1, optional: true, max: undefined, check: projectPath }),
  default_namespace: str({ check: namespaceName }),
  paths: list(message({ glob: str({ minBytes: 1, max: L.globLength }) }), { max: L.pathsPerProject }),
  reconcile_timeout: { t: 'duration' },
  dry_run_strategy: str({ in: ['', 'none', 'client', 'server'] }),
  prune: { t: 'bool' },
  prune_timeout: { t: 'duration' },
  prune_propagation_policy: str({ in: ['', 'orphan', 'background', 'foreground'] }),
  inventory_policy: str({ in: ['', ...INVENTORY_POLICIES] }),
  ref: gitRef,
});

/** `gitops.drift`: this product's extension (how the agent treats changes made by hand). */
const drift = message({
  mode: str({ in: ['correct', 'detect', 'off'] }),
  ignore: list(
    message({
      group: str({ optional: true, max: L.selectorLength }),
      kind: str({ minBytes: 1, optional: true, max: L.selectorLength }),
      namespace: str({ minBytes: 1, optional: true, max: L.namespaceLength }),
      name: str({ minBytes: 1, optional: true, max: L.selectorLength }),
      paths: list(
        str({
          max: L.jsonPointerLength,
          check: (v) => (v.startsWith('/') ? undefined : `${quoteId(v)} must be a JSON pointer starting with /`),
        }),
        {
          minItems: 1,
          max: L.pathsPerDriftRule,
        },
      ),
    }),
    { max: L.driftRules },
  ),
});

const logLevel: Spec = { t: 'enum', values: ['info', 'debug', 'warn', 'error'] };

const ciAccessAs = message(
  {
    agent: empty,
    impersonate: message({
      username: str({ minBytes: 1 }),
      groups: list(str({ minBytes: 1 })),
      uid: str(),
      extra: list(message({ key: str({ minBytes: 1 }), val: list(str({ minBytes: 1 }), { minItems: 1 }) })),
    }),
    ci_job: empty,
  },
  { oneofs: [{ members: ['agent', 'impersonate', 'ci_job'], required: true }] },
);

const ciAccessTarget = message({
  id: str({ minBytes: 1 }),
  default_namespace: str(),
  access_as: ciAccessAs,
  environments: list(str({ minBytes: 1 })),
});

const resource = message({ cpu: str(), memory: str() });

/** The whole file (GitLab's `ConfigurationFile`). */
export const CONFIGURATION_FILE: Spec = message(
  {
    gitops: message(
      { manifest_projects: list(manifestProject, { max: L.manifestProjects }), drift },
      {
        removed: {
          charts:
            'gitops.charts (Helm releases) was experimental and removed from GitLab in 16.3; render the chart with `helm template` and commit the output to a manifest project, or install charts with Flux',
        },
      },
    ),
    observability: message({
      logging: message({ level: logLevel, grpc_level: logLevel }),
      google_profiler: message({
        enabled: { t: 'bool' },
        project_id: str(),
        credentials_file: str(),
        debug_logging: { t: 'bool' },
      }),
    }),
    ci_access: message({ projects: list(ciAccessTarget), groups: list(ciAccessTarget) }),
    container_scanning: message({
      vulnerability_report: message({
        namespaces: list(str()),
        filters: list(
          message({ namespaces: list(str()), resources: list(str()), containers: list(str()), kinds: list(str()) }),
        ),
      }),
      cadence: str({ minBytes: 1 }),
      resource_requirements: message({ limits: resource, requests: resource }),
    }),
    user_access: message({
      access_as: message({ agent: empty, user: empty }, { oneofs: [{ members: ['agent', 'user'], required: true }] }),
      projects: list(message({ id: str({ minBytes: 1 }) })),
      groups: list(message({ id: str({ minBytes: 1 }) })),
    }),
    remote_development: message({
      enabled: { t: 'bool' },
      dns_zone: str(),
      partial_sync_interval: { t: 'duration', positive: true },
      full_sync_interval: { t: 'duration', positive: true },
      gitlab_workspaces_proxy: message({ namespace: str() }),
      network_policy: message({ enabled: { t: 'bool' } }),
    }),
    flux: message({ webhook_receiver_url: str() }),
  },
  {
    removed: {
      starboard: 'starboard was removed from GitLab in 16.0: use container_scanning',
      cilium: 'cilium was removed from GitLab in 15.0',
    },
  },
);

/** Sections GitLab defines that this product accepts and does not act on. */
export const UNUSED_SECTIONS = [
  'ci_access',
  'user_access',
  'container_scanning',
  'remote_development',
  'flux',
] as const;
