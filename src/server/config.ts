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
 */
import { isMap, isSeq, LineCounter, parseAllDocuments as parseAll, type Document, type Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { parseDuration } from '../common/duration.js';
import type { AgentSettings, DriftConfig, ManifestProjectConfig, ProblemReport } from '../protocol/messages.js';
import { GitopsError, errorMessage } from '../common/errors.js';
import type { AgentConfig, AgentConfigResult, GitSource } from './ports.js';

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

const RawRef = z
  .strictObject({
    branch: nonEmpty.optional(),
    tag: nonEmpty.optional(),
    commit: z.string().regex(/^[0-9a-f]{40}([0-9a-f]{24})?$/, 'must be a full commit id (40 hex digits)').optional(),
  })
  .refine((r) => Object.values(r).filter((v) => v !== undefined).length <= 1, { message: 'set only one of branch, tag and commit' });

const RawManifestProject = z.strictObject({
  id: nonEmpty.optional(),
  ref: RawRef.nullish(),
  default_namespace: nonEmpty.optional(),
  paths: z.array(z.strictObject({ glob: nonEmpty })).nullish(),
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
        group: z.string().optional(),
        kind: nonEmpty.optional(),
        namespace: nonEmpty.optional(),
        name: nonEmpty.optional(),
        paths: z.array(z.string().startsWith('/', 'must be a JSON pointer starting with /')).min(1, 'list at least one JSON pointer'),
      }),
    )
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
      manifest_projects: z.array(RawManifestProject).nullish(),
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
 * Parse and resolve one config.yaml. Never throws: problems come back in the result, each with
 * file and line, and all of them at once so one edit can fix them.
 */
export function parseAgentConfig(text: string, options: ParseAgentConfigOptions): AgentConfigResult {
  const { file, commit } = options;
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
  if (problems.length) return { ok: false, problems, commit };

  const value: unknown = doc?.toJS() ?? {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, problems: [problem(ConfigProblem.INVALID_VALUE, 1, 'the file must be a mapping of sections (gitops, observability, ...)')], commit };
  }

  const parsed = RawConfig.safeParse(value);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(...issueProblems(issue, doc, lineOf, problem));
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
  return { ok: true, config, commit };
}

/**
 * Read and parse an agent's config.yaml at a commit of its config project. A missing file is a
 * valid config with no manifest projects (an agent registered without configuration, as on
 * GitLab); a file that cannot be read (too large) is a problem like any other.
 */
export async function loadAgentConfig(
  source: Pick<GitSource, 'readFile'>,
  options: { configProject: string; agentName: string; commit: string },
): Promise<AgentConfigResult> {
  const file = agentConfigPath(options.agentName);
  let text: string | undefined;
  try {
    text = await source.readFile(options.configProject, options.commit, file);
  } catch (err) {
    const code = err instanceof GitopsError ? err.code : 'CONFIG_UNREADABLE';
    return { ok: false, problems: [{ code, message: `${file}: cannot read it at ${options.commit.slice(0, 12)}: ${errorMessage(err)}`, file }], commit: options.commit };
  }
  return parseAgentConfig(text ?? '', { file, configProject: options.configProject, commit: options.commit });
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
