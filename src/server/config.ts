/**
 * The agent configuration file, `.gitlab/agents/<name>/config.yaml`, in GitLab's format: parsed,
 * validated (every problem listed, each with file, line and key) and resolved with GitLab's
 * defaults into an AgentConfig. Pure: the caller reads the file from Git.
 *
 * What is accepted:
 * - `gitops.manifest_projects[]` with GitLab's keys and defaults (see `MANIFEST_PROJECT_DEFAULTS`);
 * - `gitops.drift` (this product's extension: how the agent treats manual changes);
 * - `observability.logging.level` (the agent's log level); the rest of `observability` is accepted;
 * - the other sections GitLab defines (`ci_access`, `user_access`, `container_scanning`,
 *   `remote_development`, `flux`, and the older `starboard` and `cilium`): accepted as written
 *   (their content is GitLab's business, so it is not second-guessed here) and listed in
 *   `unusedSections` so the caller can say once that they have no effect.
 * - `gitops.charts` (GitLab's Helm releases) is refused with what to do instead.
 * Any key GitLab does not define is an error, as GitLab itself rejects unknown fields.
 *
 * The file comes from a tenant (anyone who can push to the config project), so everything in it
 * is bounded (CONFIG_LIMITS): the file's size is checked before it is parsed (GitLab's 128 KiB),
 * YAML aliases may not expand past a count, lists and strings have a maximum, and project ids and
 * branch/tag names must be what GitLab and Git accept before they get near a URL or a file path.
 */
import { isMap, isSeq, LineCounter, parseAllDocuments as parseAll, type Document, type Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { parseDuration } from '../common/duration.js';
import type { AgentSettings, DriftConfig, ManifestProjectConfig, ProblemReport } from '../protocol/messages.js';
import { GitopsError, errorMessage, problemOf } from '../common/errors.js';
import { ProblemCode } from '../protocol/problems.js';
import type { AgentConfig, AgentConfigResult, GitSource } from './ports.js';
import { projectIdProblem, quoteId } from './project-id.js';

/** Where GitLab keeps an agent's configuration in its config project. */
export function agentConfigPath(agentName: string): string {
  return `.gitlab/agents/${agentName}/config.yaml`;
}

/** GitLab's default glob: every YAML and JSON file in the repository. */
export const DEFAULT_GLOB = '**/*.{yaml,yml,json}';

/** GitLab's defaults for a manifest project (besides `id`, which defaults to the config project). */
export const MANIFEST_PROJECT_DEFAULTS = {
  defaultNamespace: 'default',
  reconcileTimeoutMs: 3_600_000,
  dryRunStrategy: 'none',
  prune: true,
  pruneTimeoutMs: 3_600_000,
  prunePropagationPolicy: 'foreground',
  inventoryPolicy: 'must_match',
} as const;

/** Sections GitLab defines that this product accepts and does not act on. */
export const UNUSED_SECTIONS = ['ci_access', 'user_access', 'container_scanning', 'remote_development', 'flux', 'starboard', 'cilium'] as const;

/** Stable problem codes for config errors (sent to the agent and shown by `agent list`). */
export const ConfigProblem = {
  YAML: 'CONFIG_YAML_INVALID',
  UNKNOWN_KEY: 'CONFIG_UNKNOWN_KEY',
  INVALID_VALUE: 'CONFIG_INVALID_VALUE',
  CHARTS_UNSUPPORTED: 'CONFIG_CHARTS_UNSUPPORTED',
  TOO_LARGE: 'CONFIG_TOO_LARGE',
} as const;

/**
 * What one config.yaml may hold. The file size is GitLab's limit for an agent configuration file;
 * the rest bound what a tenant can make the server hold and the agent apply (documented in
 * docs/configuration.md).
 */
export const CONFIG_LIMITS = {
  /** config.yaml, in bytes (GitLab: 128 KiB), refused before it is parsed. */
  fileBytes: 128 * 1024,
  /** YAML alias expansions (the `yaml` package's maxAliasCount): no "billion laughs". */
  aliasCount: 100,
  manifestProjects: 100,
  pathsPerProject: 100,
  /** Same as the glob engine's MAX_GLOB_LENGTH (git/globs.ts). */
  globLength: 1024,
  /** Git's own limit for a ref name is the file system's (255 bytes per component). */
  refNameLength: 255,
  driftRules: 100,
  pathsPerDriftRule: 100,
  jsonPointerLength: 1024,
  /** API group, kind, object name (a Kubernetes DNS subdomain is at most 253). */
  selectorLength: 253,
  /** A Kubernetes namespace is a DNS label. */
  namespaceLength: 63,
} as const;

const CHARTS_MESSAGE =
  'gitops.charts (Helm releases) is not supported: render the chart with `helm template` and commit the output to a manifest project, or install charts with Flux';

// ---- the raw schema (GitLab's snake_case keys), strict at every level ----

const durationText = z.union([z.string(), z.number()]).superRefine((value, ctx) => {
  try {
    parseDuration(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

const nonEmpty = z.string().min(1, 'must not be empty');
const L = CONFIG_LIMITS;

/** A string of at most `max` characters, saying so (and how long it was) when it is longer. */
function bounded(max: number, min = 0): z.ZodString {
  return z.string().min(min, 'must not be empty').max(max, `must be at most ${max} characters`);
}

/** A manifest project id: a GitLab project path. An explicitly empty id is refused (leave it out instead). */
const projectId = z.string().superRefine((id, ctx) => {
  if (id === '') {
    ctx.addIssue({ code: 'custom', message: 'must not be empty: leave id out to use the config project, or write a project path such as group/name' });
    return;
  }
  const problem = projectIdProblem(id);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: `${quoteId(id)} is not a GitLab project path: ${problem}; write it as group/name` });
});

/** Why `name` cannot be a Git branch or tag name (git check-ref-format, and nothing that reads as an option or a path), or undefined. */
export function refNameProblem(name: string): string | undefined {
  if (name === '') return 'must not be empty';
  if (name.length > L.refNameLength) return `must be at most ${L.refNameLength} characters (this one has ${name.length})`;
  if (/[\x00-\x20\x7f~^:?*[\\]/.test(name)) return 'must not contain spaces, control characters or any of ~ ^ : ? * [ \\';
  if (name.includes('..')) return "must not contain '..'";
  if (name.includes('@{') || name === '@') return "must not contain '@{' or be '@'";
  if (name.startsWith('-')) return "must not start with '-'";
  if (name.startsWith('/') || name.endsWith('/') || name.includes('//')) return "must not start or end with '/' or contain '//'";
  if (name.endsWith('.')) return "must not end in '.'";
  if (name.split('/').some((c) => c.startsWith('.') || c.endsWith('.lock'))) return "no part between '/' may start with '.' or end in '.lock'";
  return undefined;
}

const refName = z.string().superRefine((name, ctx) => {
  const problem = refNameProblem(name);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: `${problem === 'must not be empty' ? '' : `${quoteId(name)} is not a valid Git ref name: `}${problem}` });
});

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const namespaceName = bounded(L.namespaceLength, 1).regex(DNS_LABEL, 'must be a Kubernetes namespace name: lowercase letters, digits and \'-\', starting and ending with a letter or digit');

const RawRef = z
  .strictObject({
    branch: refName.optional(),
    tag: refName.optional(),
    commit: z.string().regex(/^[0-9a-f]{40}([0-9a-f]{24})?$/, 'must be a full commit id (40 hex digits)').optional(),
  })
  .refine((r) => Object.values(r).filter((v) => v !== undefined).length <= 1, { message: 'set only one of branch, tag and commit' });

const RawManifestProject = z.strictObject({
  id: projectId.optional(),
  ref: RawRef.nullish(),
  default_namespace: namespaceName.optional(),
  paths: z.array(z.strictObject({ glob: bounded(L.globLength, 1) })).max(L.pathsPerProject, `list at most ${L.pathsPerProject} paths per project`).nullish(),
  reconcile_timeout: durationText.optional(),
  dry_run_strategy: z.enum(['none', 'client', 'server']).optional(),
  prune: z.boolean().optional(),
  prune_timeout: durationText.optional(),
  prune_propagation_policy: z.enum(['foreground', 'background', 'orphan']).optional(),
  inventory_policy: z.enum(['must_match', 'adopt_if_no_inventory', 'adopt_all']).optional(),
});

const RawDrift = z.strictObject({
  mode: z.enum(['correct', 'detect', 'off']).optional(),
  ignore: z
    .array(
      z.strictObject({
        group: bounded(L.selectorLength).optional(),
        kind: bounded(L.selectorLength, 1).optional(),
        namespace: bounded(L.namespaceLength, 1).optional(),
        name: bounded(L.selectorLength, 1).optional(),
        paths: z
          .array(bounded(L.jsonPointerLength).startsWith('/', 'must be a JSON pointer starting with /'))
          .min(1, 'list at least one JSON pointer')
          .max(L.pathsPerDriftRule, `list at most ${L.pathsPerDriftRule} JSON pointers per rule`),
      }),
    )
    .max(L.driftRules, `list at most ${L.driftRules} ignore rules`)
    .nullish(),
});

const logLevel = z.enum(['debug', 'info', 'warn', 'error']);

const RawObservability = z.strictObject({
  logging: z.strictObject({ level: logLevel.optional(), grpc_level: logLevel.optional() }).nullish(),
  google_profiler: z.record(z.string(), z.unknown()).nullish(),
});

/** A section whose content GitLab validates; here it only has to be a mapping (or empty). */
const foreignSection = z.record(z.string(), z.unknown()).nullish();

const RawConfig = z.strictObject({
  gitops: z
    .strictObject({
      manifest_projects: z.array(RawManifestProject).max(L.manifestProjects, `list at most ${L.manifestProjects} manifest projects`).nullish(),
      charts: z.unknown().optional(),
      drift: RawDrift.nullish(),
    })
    .nullish(),
  observability: RawObservability.nullish(),
  ...Object.fromEntries(UNUSED_SECTIONS.map((s) => [s, foreignSection])),
});
type RawConfig = z.infer<typeof RawConfig> & Partial<Record<(typeof UNUSED_SECTIONS)[number], unknown>>;

export interface ParseAgentConfigOptions {
  /** File name used in problems, e.g. `.gitlab/agents/agent1/config.yaml`. */
  file: string;
  /** The config project, the default `id` of a manifest project. */
  configProject: string;
  /** Commit the file was read at (carried into the result). */
  commit: string;
}

/**
 * A parse result that also says on which line each manifest project is listed (index as in
 * `config.projects`), so a later check of a project (may this agent read it?) can name the line.
 */
export type ParsedAgentConfig = AgentConfigResult & { projectLines?: readonly (number | undefined)[] };

/** Problems listed per file at most (a 128 KiB file of mistakes must not become 10,000 problems). */
const MAX_LISTED_PROBLEMS = 50;

/** `4.7 MiB`, `130 KiB`, `812 bytes`: for size messages. */
function sizeText(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(bytes % 1024 === 0 ? 0 : 1)} KiB`;
  return `${bytes} bytes`;
}

/** The problem for a config.yaml over CONFIG_LIMITS.fileBytes (also used when the size is known before reading). */
export function configTooLarge(file: string, bytes: number): ProblemReport {
  return {
    code: ConfigProblem.TOO_LARGE,
    message: `${file}: ${sizeText(bytes)} (${bytes} bytes) is over the ${sizeText(CONFIG_LIMITS.fileBytes)} limit for an agent configuration file (GitLab's limit too), so it was not parsed; shorten it (the lists in it have caps of their own)`,
    file,
  };
}

/**
 * Parse and resolve one config.yaml. Never throws: problems come back in the result, each with
 * file and line, and all of them at once so one edit can fix them.
 */
export function parseAgentConfig(text: string, options: ParseAgentConfigOptions): ParsedAgentConfig {
  const { file, commit } = options;
  // Before anything is parsed: a YAML document model is many times the size of its text. A UTF-16
  // length over the limit is over it in UTF-8 too, so the byte count is only taken for short texts.
  if (text.length > CONFIG_LIMITS.fileBytes || Buffer.byteLength(text, 'utf8') > CONFIG_LIMITS.fileBytes) {
    return { ok: false, problems: [configTooLarge(file, Buffer.byteLength(text, 'utf8'))], commit };
  }
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, lines);
  const problems: ProblemReport[] = [];
  const lineOf = (offset: number | undefined): number | undefined => (offset === undefined ? undefined : lines.linePos(offset).line);
  const problem = (code: string, line: number | undefined, what: string): ProblemReport => ({
    code,
    message: `${file}${line ? `:${line}` : ''}: ${what}`,
    file,
    ...(line ? { line } : {}),
  });

  if (docs.length > 1) {
    problems.push(problem(ConfigProblem.YAML, lineOf(docs[1].contents?.range?.[0]), 'expected one YAML document, found several'));
  }
  const doc = docs[0];
  if (doc) {
    for (const err of doc.errors) {
      problems.push(problem(ConfigProblem.YAML, err.linePos?.[0].line ?? lineOf(err.pos[0]), err.message.split('\n')[0]));
    }
  }
  if (problems.length) return { ok: false, problems: problems.slice(0, MAX_LISTED_PROBLEMS), commit };

  let value: unknown;
  try {
    value = doc?.toJS({ maxAliasCount: CONFIG_LIMITS.aliasCount }) ?? {};
  } catch (err) {
    // The yaml package throws (a ReferenceError) for too many alias expansions or an unresolved alias.
    const what = /excessive alias count/i.test(errorMessage(err))
      ? `YAML aliases expand to more than ${CONFIG_LIMITS.aliasCount} nodes; write the values out or use fewer aliases`
      : `YAML cannot be resolved: ${errorMessage(err).split('\n')[0].slice(0, 200)}`;
    return { ok: false, problems: [problem(ConfigProblem.YAML, undefined, what)], commit };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, problems: [problem(ConfigProblem.INVALID_VALUE, 1, 'the file must be a mapping of sections (gitops, observability, ...)')], commit };
  }

  const parsed = RawConfig.safeParse(value);
  if (!parsed.success) {
    for (const issue of parsed.error.issues.slice(0, MAX_LISTED_PROBLEMS)) problems.push(...issueProblems(issue, doc, lineOf, problem));
  }
  const raw = (parsed.success ? parsed.data : value) as RawConfig;
  if (raw.gitops && 'charts' in raw.gitops && raw.gitops.charts !== undefined) {
    problems.push(problem(ConfigProblem.CHARTS_UNSUPPORTED, keyLine(doc, ['gitops'], 'charts', lineOf), CHARTS_MESSAGE));
  }
  if (!parsed.success || problems.length) return { ok: false, problems: dedupe(problems), commit };

  const projects = (raw.gitops?.manifest_projects ?? []).map((p) => resolveProject(p, options.configProject));
  const seen = new Map<string, number>();
  projects.forEach((p, i) => {
    if (seen.has(p.id)) {
      problems.push(
        problem(ConfigProblem.INVALID_VALUE, nodeLine(doc, ['gitops', 'manifest_projects', i], lineOf), `gitops.manifest_projects[${i}].id: project ${p.id} is already listed as manifest_projects[${seen.get(p.id)}]; list each project once`),
      );
    } else {
      seen.set(p.id, i);
    }
  });
  if (problems.length) return { ok: false, problems, commit };

  const config: AgentConfig = {
    settings: resolveSettings(raw),
    projects,
    unusedSections: unusedSections(raw),
  };
  // The line of `id:`, or of the list item when id is left out (nodeLine falls back to the parent).
  const projectLines = projects.map((_p, i) => nodeLine(doc, ['gitops', 'manifest_projects', i, 'id'], lineOf));
  return { ok: true, config, commit, projectLines };
}

/**
 * Read and parse an agent's config.yaml at a commit of its config project (the server's only read
 * of it: the Fleet calls this). A missing file is a valid config with no manifest projects (an
 * agent registered without configuration, as on GitLab). A file over GitLab's limit is refused by
 * the Git layer from the object header, before it is inflated, and reported as CONFIG_TOO_LARGE;
 * any other failure keeps the Git error's code (CONFIG_UNREADABLE when it has none).
 */
export async function loadAgentConfig(
  source: Pick<GitSource, 'readFile'>,
  options: { configProject: string; agentName: string; commit: string },
): Promise<ParsedAgentConfig> {
  const { configProject, commit } = options;
  const file = agentConfigPath(options.agentName);
  let text: string | undefined;
  try {
    text = await source.readFile(configProject, commit, file, { maxBytes: CONFIG_LIMITS.fileBytes });
  } catch (err) {
    const bytes = err instanceof GitopsError && err.code === 'GIT_FILE_TOO_LARGE' ? err.data.bytes : undefined;
    if (typeof bytes === 'number') return { ok: false, problems: [configTooLarge(file, bytes)], commit };
    const { code, message } = problemOf(err, ProblemCode.CONFIG_UNREADABLE);
    return { ok: false, problems: [{ code, message: `${file}: cannot be read from ${configProject} at ${commit.slice(0, 12)}: ${message}`, file }], commit };
  }
  return parseAgentConfig(text ?? '', { file, configProject, commit });
}

/** Every document in the text; an empty text (or only comments) is no document at all. */
function parseAllDocuments(text: string, lineCounter: LineCounter): Document[] {
  return [...parseAll(text, { lineCounter, prettyErrors: true })];
}

function resolveProject(p: z.infer<typeof RawManifestProject>, configProject: string): ManifestProjectConfig {
  const d = MANIFEST_PROJECT_DEFAULTS;
  let ref: ManifestProjectConfig['ref'] = {};
  if (p.ref?.branch !== undefined) ref = { branch: p.ref.branch };
  else if (p.ref?.tag !== undefined) ref = { tag: p.ref.tag };
  else if (p.ref?.commit !== undefined) ref = { commit: p.ref.commit };
  const paths = p.paths && p.paths.length ? p.paths.map((x) => ({ glob: x.glob })) : [{ glob: DEFAULT_GLOB }];
  return {
    id: p.id ?? configProject,
    ref,
    defaultNamespace: p.default_namespace ?? d.defaultNamespace,
    paths,
    reconcileTimeoutMs: p.reconcile_timeout === undefined ? d.reconcileTimeoutMs : parseDuration(p.reconcile_timeout),
    dryRunStrategy: p.dry_run_strategy ?? d.dryRunStrategy,
    prune: p.prune ?? d.prune,
    pruneTimeoutMs: p.prune_timeout === undefined ? d.pruneTimeoutMs : parseDuration(p.prune_timeout),
    prunePropagationPolicy: p.prune_propagation_policy ?? d.prunePropagationPolicy,
    inventoryPolicy: p.inventory_policy ?? d.inventoryPolicy,
  };
}

function resolveSettings(raw: RawConfig): AgentSettings {
  const drift: DriftConfig = {
    mode: raw.gitops?.drift?.mode ?? 'correct',
    ignore: (raw.gitops?.drift?.ignore ?? []).map((r) => ({ ...r, paths: [...r.paths] })),
  };
  const level = raw.observability?.logging?.level;
  return level ? { logLevel: level, drift } : { drift };
}

function unusedSections(raw: RawConfig): string[] {
  const out: string[] = UNUSED_SECTIONS.filter((s) => raw[s] !== undefined);
  if (raw.observability?.logging?.grpc_level !== undefined) out.push('observability.logging.grpc_level');
  if (raw.observability?.google_profiler !== undefined && raw.observability.google_profiler !== null) out.push('observability.google_profiler');
  return out;
}

type ProblemFn = (code: string, line: number | undefined, what: string) => ProblemReport;
type LineOf = (offset: number | undefined) => number | undefined;

/** One zod issue → problems with the line of the offending key or value. */
function issueProblems(issue: z.core.$ZodIssue, doc: Document | undefined, lineOf: LineOf, problem: ProblemFn): ProblemReport[] {
  const path = issue.path.filter((k): k is string | number => typeof k !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const where = pathText([...path, key]);
      return problem(ConfigProblem.UNKNOWN_KEY, keyLine(doc, path, key, lineOf), `unknown key ${where}: GitLab's agent configuration defines no such key${hintFor(path, key)}`);
    });
  }
  // A union of types (duration: string or number) reports its own nested issues; show the first.
  if (issue.code === 'invalid_union' && issue.errors.length && issue.errors[0].length) {
    const inner = issue.errors.flat().find((e) => e.code === 'custom') ?? issue.errors[0][0];
    return issueProblems({ ...inner, path: [...issue.path, ...inner.path] } as z.core.$ZodIssue, doc, lineOf, problem);
  }
  const where = pathText(path) || '(root)';
  return [problem(ConfigProblem.INVALID_VALUE, nodeLine(doc, path, lineOf), `${where}: ${describeIssue(issue)}`)];
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_value' && 'values' in issue) {
    return `must be one of ${issue.values.map((v) => String(v)).join(', ')}`;
  }
  if (issue.code === 'invalid_type') {
    return `expected ${issue.expected === 'object' ? 'a mapping' : issue.expected === 'array' ? 'a list' : `a ${issue.expected}`}`;
  }
  return issue.message;
}

/** Hints for keys people write by mistake. */
function hintFor(path: (string | number)[], key: string): string {
  if (path.length === 0 && key === 'manifest_projects') return ' (it belongs under gitops:)';
  if (key === 'resource_inclusions' || key === 'resource_exclusions') return ' (GitLab removed it in 14.0)';
  return '';
}

function pathText(path: (string | number)[]): string {
  return path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : `.${k}`)).join('');
}

/** Line of the value at `path` (or of its nearest existing parent). */
function nodeLine(doc: Document | undefined, path: (string | number)[], lineOf: LineOf): number | undefined {
  if (!doc) return undefined;
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as YamlNode | undefined;
    if (node && typeof node === 'object' && 'range' in node && node.range) {
      // For a key whose value is empty, point at the key instead of the next line.
      if (n > 0) {
        const key = keyLine(doc, path.slice(0, n - 1), path[n - 1], lineOf);
        if (key !== undefined && !(isMap(node) || isSeq(node))) return key;
      }
      return lineOf(node.range[0]);
    }
    if (n > 0) {
      const key = keyLine(doc, path.slice(0, n - 1), path[n - 1], lineOf);
      if (key !== undefined) return key;
    }
  }
  return undefined;
}

/** Line of the key `key` in the mapping at `path`. */
function keyLine(doc: Document | undefined, path: (string | number)[], key: string | number, lineOf: LineOf): number | undefined {
  if (!doc) return undefined;
  const parent = path.length ? doc.getIn(path, true) : doc.contents;
  if (isMap(parent)) {
    for (const pair of parent.items) {
      const k = pair.key as YamlNode | null;
      if (k && typeof k === 'object' && 'value' in k && String(k.value) === String(key) && k.range) return lineOf(k.range[0]);
    }
  }
  if (isSeq(parent) && typeof key === 'number') {
    const item = parent.items[key] as YamlNode | undefined;
    if (item && typeof item === 'object' && item.range) return lineOf(item.range[0]);
  }
  return undefined;
}

function dedupe(problems: ProblemReport[]): ProblemReport[] {
  const seen = new Set<string>();
  return problems.filter((p) => (seen.has(p.message) ? false : (seen.add(p.message), true)));
}
