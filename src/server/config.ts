/**
 * The agent configuration file, `.gitlab/agents/<name>/config.yaml`, with GitLab's own verdict:
 * read as kas read it (agent-config/yaml.ts: YAML 1.1 through sigs.k8s.io/yaml), checked key by
 * key against GitLab v16.5's schema (agent-config/schema.ts, agent-config/validate.ts: every
 * section GitLab defines, strictly, unknown keys refused), then the checks GitLab made later
 * (duplicate project ids, as agentk refused them; globs doublestar would find malformed) made
 * here, with a line, and resolved with agentk's defaults into an AgentConfig. Pure: the caller
 * reads the file from Git (loadAgentConfig below is the server's one reader; `gitops-server config
 * check` parses files with the same parseAgentConfig).
 *
 * Every problem names the file, line, column and key, says what GitLab accepts, and all problems
 * come at once so one edit can fix them. The file comes from a tenant (anyone who can push to the
 * config project), so everything in it is bounded (CONFIG_LIMITS): the size is checked before the
 * file is parsed (GitLab's 128 KiB), YAML aliases may not expand past a count, lists and strings
 * have maximums, and project ids and ref names must be what GitLab and Git accept before they get
 * near a URL or a file path. The one deliberate difference from GitLab: `gitops.drift`.
 */
import { GitopsError, problemOf } from '../common/errors.js';
import type { AgentSettings, DriftConfig, ManifestProjectConfig, ProblemReport } from '../protocol/messages.js';
import { ProblemCode } from '../protocol/problems.js';
import { CONFIGURATION_FILE, SCHEMA_LIMITS, UNUSED_SECTIONS } from './agent-config/schema.js';
import { parseGitLabDuration, pathText, validateAgainst, type SchemaIssue } from './agent-config/validate.js';
import { parseConfigYaml, type ParsedYaml, type Position, type YamlPath } from './agent-config/yaml.js';
import { globProblem } from './git/globs.js';
import type { AgentConfigResult, GitSource } from './ports.js';

export { refNameProblem } from './agent-config/schema.js';
export type { Position } from './agent-config/yaml.js';

/** Where GitLab keeps an agent's configuration in its config project. */
export function agentConfigPath(agentName: string): string {
  return `.gitlab/agents/${agentName}/config.yaml`;
}

/** GitLab's default glob: every YAML and JSON file in the repository. */
export const DEFAULT_GLOB = '**/*.{yaml,yml,json}';

/** agentk's defaults for a manifest project (besides `id`, which defaults to the config project). */
export const MANIFEST_PROJECT_DEFAULTS = {
  defaultNamespace: 'default',
  reconcileTimeoutMs: 3_600_000,
  dryRunStrategy: 'none',
  prune: true,
  pruneTimeoutMs: 3_600_000,
  prunePropagationPolicy: 'foreground',
  inventoryPolicy: 'must_match',
} as const;

/** Stable problem codes for config errors (sent to the agent and shown by `agent list`). */
export const ConfigProblem = {
  YAML: ProblemCode.CONFIG_YAML_INVALID,
  UNKNOWN_KEY: ProblemCode.CONFIG_UNKNOWN_KEY,
  INVALID_VALUE: ProblemCode.CONFIG_INVALID_VALUE,
  CHARTS_UNSUPPORTED: ProblemCode.CONFIG_CHARTS_UNSUPPORTED,
  TOO_LARGE: ProblemCode.CONFIG_TOO_LARGE,
} as const;

/**
 * What one config.yaml may hold. The file size and the paths per project are GitLab's limits;
 * the rest bound what a tenant can make the server hold and the agent apply (documented in
 * docs/configuration.md).
 */
export const CONFIG_LIMITS = {
  /** config.yaml, in bytes (GitLab: 128 KiB), refused before it is parsed. */
  fileBytes: 128 * 1024,
  /** YAML alias expansions (the `yaml` package's maxAliasCount): no "billion laughs". */
  aliasCount: 100,
  ...SCHEMA_LIMITS,
} as const;

/** One problem in a config.yaml, with everything `config check -o json` prints. */
export interface ConfigIssue {
  code: string;
  /** What is wrong, without the location (ProblemReport.message has file:line:column: key: first). */
  message: string;
  /** What GitLab accepts instead, when there is something to say. */
  hint?: string;
  /** Dotted key path, e.g. `gitops.manifest_projects[0].reconcile_timeout` (absent for the whole file). */
  key?: string;
  line?: number;
  column?: number;
}

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
 * `config.projects`), so a later check of a project (may this agent read it?) can name the line,
 * and where each of its globs is (`globPositions[project][path]`), so a file matched by two globs
 * (GIT_GLOBS_OVERLAP from the Git layer) can name both; `issues` are the problems in full.
 */
export type ParsedAgentConfig = AgentConfigResult & {
  projectLines?: readonly (number | undefined)[];
  globPositions?: readonly (readonly (Position | undefined)[])[];
  issues?: readonly ConfigIssue[];
  /** The file as GitLab would have used it, defaults filled in (`config check -o json`). */
  resolved?: Record<string, unknown>;
};

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

/** `file:line:column: key: message; hint`: how a problem reads in `agent list`, logs and `config check`. */
export function issueText(file: string, issue: ConfigIssue, withHint = true): string {
  const where = [file, issue.line, issue.line !== undefined ? issue.column : undefined]
    .filter((p) => p !== undefined)
    .join(':');
  return `${where}: ${issue.key ? `${issue.key}: ` : ''}${issue.message}${withHint && issue.hint ? `; ${issue.hint}` : ''}`;
}

function toReport(file: string, issue: ConfigIssue): ProblemReport {
  return {
    code: issue.code,
    message: issueText(file, issue),
    file,
    ...(issue.line !== undefined ? { line: issue.line } : {}),
  };
}

function failed(file: string, commit: string, issues: ConfigIssue[]): ParsedAgentConfig {
  const listed = issues.slice(0, MAX_LISTED_PROBLEMS);
  return { ok: false, problems: listed.map((i) => toReport(file, i)), commit, issues: listed };
}

/**
 * Parse and resolve one config.yaml. Never throws: problems come back in the result, each with
 * file, line, column and key, and all of them at once so one edit can fix them.
 */
export function parseAgentConfig(text: string, options: ParseAgentConfigOptions): ParsedAgentConfig {
  const { file, commit } = options;
  // Before anything is parsed: a YAML document model is many times the size of its text. A UTF-16
  // length over the limit is over it in UTF-8 too, so the byte count is only taken for short texts.
  if (text.length > CONFIG_LIMITS.fileBytes || Buffer.byteLength(text, 'utf8') > CONFIG_LIMITS.fileBytes) {
    const problem = configTooLarge(file, Buffer.byteLength(text, 'utf8'));
    return {
      ok: false,
      problems: [problem],
      commit,
      issues: [{ code: problem.code, message: problem.message.slice(file.length + 2) }],
    };
  }
  const parsed = parseConfigYaml(text, CONFIG_LIMITS.aliasCount);
  if (!parsed.ok)
    return failed(file, commit, [
      { code: ConfigProblem.YAML, message: `not valid YAML: ${parsed.message}`, ...parsed.position },
    ]);
  const { yaml } = parsed;
  const raw = yaml.value ?? {};

  const issues = validateAgainst(CONFIGURATION_FILE, raw, MAX_LISTED_PROBLEMS).map((i) => located(yaml, i));
  if (issues.length) return failed(file, commit, issues);

  const config = raw as RawConfig;
  const projects = (config.gitops?.manifest_projects ?? []).map((p) => resolveProject(p, options.configProject));
  const later = [...duplicateIds(yaml, projects), ...globIssues(yaml, config)];
  if (later.length) return failed(file, commit, later);

  return {
    ok: true,
    config: { settings: resolveSettings(config), projects, unusedSections: unusedSections(config) },
    commit,
    // The line of `id:`, or of the list item when id is left out.
    projectLines: projects.map((_p, i) => yaml.keyAt(['gitops', 'manifest_projects', i, 'id'])?.line),
    globPositions: (config.gitops?.manifest_projects ?? []).map((p, i) =>
      (p.paths ?? []).map((_g, j) => yaml.valueAt(['gitops', 'manifest_projects', i, 'paths', j, 'glob'])),
    ),
    issues: [],
    resolved: resolvedFile(config, projects),
  };
}

/** A schema issue with the line and column of its key or value. */
function located(yaml: ParsedYaml, issue: SchemaIssue): ConfigIssue {
  const position = issue.at === 'key' ? yaml.keyAt(issue.path) : yaml.valueAt(issue.path);
  const key = pathText(issue.path);
  return {
    code: issue.code,
    message: issue.message,
    ...(issue.hint ? { hint: issue.hint } : {}),
    ...(key ? { key } : {}),
    ...position,
  };
}

function at(
  yaml: ParsedYaml,
  path: YamlPath,
  code: string,
  message: string,
  hint?: string,
  where: 'key' | 'value' = 'value',
): ConfigIssue {
  return located(yaml, { code, path, at: where, message, hint });
}

/** agentk refused a config listing one project twice ("duplicate source id"); here it has a line. */
function duplicateIds(yaml: ParsedYaml, projects: ManifestProjectConfig[]): ConfigIssue[] {
  const seen = new Map<string, number>();
  const out: ConfigIssue[] = [];
  projects.forEach((p, i) => {
    const first = seen.get(p.id);
    if (first === undefined) {
      seen.set(p.id, i);
      return;
    }
    const firstLine = yaml.keyAt(['gitops', 'manifest_projects', first, 'id'])?.line;
    const path = ['gitops', 'manifest_projects', i, 'id'];
    out.push({
      ...at(
        yaml,
        path,
        ConfigProblem.INVALID_VALUE,
        `project ${p.id} is already listed as manifest_projects[${first}]${firstLine ? ` (line ${firstLine})` : ''}`,
        'list each project once (GitLab refuses a duplicate id); put all its globs under one entry',
      ),
      key: pathText(path),
    });
  });
  return out;
}

/**
 * Globs doublestar would find malformed (GitLab failed the sync when a path reached the bad part;
 * here the glob is refused with its line), and a glob listed twice in one project: every file it
 * matches would be matched twice, which GitLab refuses ("path visited more than once").
 */
function globIssues(yaml: ParsedYaml, config: RawConfig): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  (config.gitops?.manifest_projects ?? []).forEach((p, i) => {
    const seen = new Map<string, number>();
    (p.paths ?? []).forEach(({ glob }, j) => {
      const path = ['gitops', 'manifest_projects', i, 'paths', j, 'glob'];
      const problem = globProblem(glob);
      if (problem)
        out.push(
          at(
            yaml,
            path,
            ConfigProblem.INVALID_VALUE,
            `${JSON.stringify(glob.length > 80 ? `${glob.slice(0, 80)}…` : glob)} is not a glob GitLab can match: ${problem}`,
          ),
        );
      const same = glob.replace(/^\//, '');
      const first = seen.get(same);
      if (first !== undefined) {
        out.push(
          at(
            yaml,
            path,
            ConfigProblem.INVALID_VALUE,
            `the same glob as paths[${first}] (line ${yaml.valueAt([...path.slice(0, -2), first, 'glob'])?.line ?? '?'}): every file it matches would be read twice, which GitLab refuses`,
            'list each glob once',
          ),
        );
      } else {
        seen.set(same, j);
      }
    });
  });
  return out;
}

/**
 * The problem for a file matched by two globs of one project (GIT_GLOBS_OVERLAP from the Git
 * layer, with `data.globs` the two indexes): named at the second glob's line, as GitLab refused it.
 */
export function globsOverlapProblem(
  file: string,
  parsed: Pick<ParsedAgentConfig, 'globPositions'>,
  projectIndex: number,
  globs: readonly [number, number],
  path: string,
): ProblemReport {
  const positions = parsed.globPositions?.[projectIndex];
  const first = positions?.[globs[0]];
  const second = positions?.[globs[1]];
  const issue: ConfigIssue = {
    code: ProblemCode.CONFIG_GLOBS_OVERLAP,
    key: `gitops.manifest_projects[${projectIndex}].paths[${globs[1]}].glob`,
    message: `${path.slice(0, 200)} is matched by this glob and by paths[${globs[0]}]${first ? ` (line ${first.line})` : ''}; GitLab refuses a file matched twice`,
    hint: 'narrow one of the globs so that each file is matched once',
    ...second,
  };
  return toReport(file, issue);
}

// ---- resolving with agentk's defaults ----

interface RawProject {
  id?: string | null;
  ref?: { branch?: string | null; tag?: string | null; commit?: string | null } | null;
  default_namespace?: string | null;
  paths?: { glob: string }[] | null;
  reconcile_timeout?: string | null;
  dry_run_strategy?: string | null;
  prune?: boolean | null;
  prune_timeout?: string | null;
  prune_propagation_policy?: string | null;
  inventory_policy?: string | null;
}

interface RawConfig {
  gitops?: {
    manifest_projects?: RawProject[] | null;
    drift?: { mode?: string | null; ignore?: DriftConfig['ignore'] | null } | null;
  } | null;
  observability?: {
    logging?: { level?: string | number | null; grpc_level?: string | number | null } | null;
    google_profiler?: unknown;
  } | null;
  [section: string]: unknown;
}

/** A validated Duration in milliseconds (a negative one, which GitLab accepts, waits for nothing). */
function durationMs(text: string | null | undefined, fallback: number): number {
  if (text === null || text === undefined) return fallback;
  const seconds = parseGitLabDuration(text) ?? 0;
  return Math.max(0, Math.round(seconds * 1e6) / 1e3);
}

/** `""` and null are "not set": agentk's defaults apply. */
function orDefault<T extends string>(value: string | null | undefined, fallback: T): T {
  return (value === null || value === undefined || value === '' ? fallback : value) as T;
}

function resolveProject(p: RawProject, configProject: string): ManifestProjectConfig {
  const d = MANIFEST_PROJECT_DEFAULTS;
  let ref: ManifestProjectConfig['ref'] = {};
  if (typeof p.ref?.branch === 'string') ref = { branch: p.ref.branch };
  else if (typeof p.ref?.tag === 'string') ref = { tag: p.ref.tag };
  else if (typeof p.ref?.commit === 'string') ref = { commit: p.ref.commit.toLowerCase() };
  const paths = p.paths && p.paths.length ? p.paths.map((x) => ({ glob: x.glob })) : [{ glob: DEFAULT_GLOB }];
  return {
    id: p.id ?? configProject,
    ref,
    defaultNamespace: orDefault(p.default_namespace, d.defaultNamespace),
    paths,
    reconcileTimeoutMs: durationMs(p.reconcile_timeout, d.reconcileTimeoutMs),
    dryRunStrategy: orDefault(p.dry_run_strategy, d.dryRunStrategy),
    prune: p.prune ?? d.prune,
    pruneTimeoutMs: durationMs(p.prune_timeout, d.pruneTimeoutMs),
    prunePropagationPolicy: orDefault(p.prune_propagation_policy, d.prunePropagationPolicy),
    inventoryPolicy: orDefault(p.inventory_policy, d.inventoryPolicy),
  };
}

const LOG_LEVELS = ['info', 'debug', 'warn', 'error'] as const;

/** A log level as written: a name, or the proto enum's number. */
function levelName(level: string | number | null | undefined): AgentSettings['logLevel'] {
  if (level === null || level === undefined) return undefined;
  return typeof level === 'number' ? LOG_LEVELS[level] : (level as AgentSettings['logLevel']);
}

function resolveSettings(raw: RawConfig): AgentSettings {
  const drift: DriftConfig = {
    mode: orDefault(raw.gitops?.drift?.mode, 'correct'),
    ignore: (raw.gitops?.drift?.ignore ?? []).map((r) => ({ ...r, paths: [...r.paths] })),
  };
  const level = levelName(raw.observability?.logging?.level);
  return level ? { logLevel: level, drift } : { drift };
}

function unusedSections(raw: RawConfig): string[] {
  const out: string[] = UNUSED_SECTIONS.filter((s) => raw[s] !== undefined && raw[s] !== null);
  const logging = raw.observability?.logging;
  if (logging?.grpc_level !== undefined && logging.grpc_level !== null) out.push('observability.logging.grpc_level');
  if (raw.observability?.google_profiler !== undefined && raw.observability.google_profiler !== null)
    out.push('observability.google_profiler');
  return out;
}

const seconds = (ms: number): string => `${ms / 1000}s`;

/** The file in GitLab's form with every default filled in, as `config check -o json` shows it. */
function resolvedFile(raw: RawConfig, projects: ManifestProjectConfig[]): Record<string, unknown> {
  const settings = resolveSettings(raw);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw))
    if (value !== null && value !== undefined && key !== 'gitops' && key !== 'observability') out[key] = value;
  out.gitops = {
    manifest_projects: projects.map((p) => ({
      id: p.id,
      ...(Object.keys(p.ref).length ? { ref: p.ref } : {}),
      default_namespace: p.defaultNamespace,
      paths: p.paths,
      reconcile_timeout: seconds(p.reconcileTimeoutMs),
      dry_run_strategy: p.dryRunStrategy,
      prune: p.prune,
      prune_timeout: seconds(p.pruneTimeoutMs),
      prune_propagation_policy: p.prunePropagationPolicy,
      inventory_policy: p.inventoryPolicy,
    })),
    drift: settings.drift,
  };
  const logging = raw.observability?.logging;
  out.observability = {
    ...(raw.observability ?? {}),
    logging: { level: settings.logLevel ?? 'info', grpc_level: levelName(logging?.grpc_level) ?? 'warn' },
  };
  return out;
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
    return {
      ok: false,
      problems: [
        { code, message: `${file}: cannot be read from ${configProject} at ${commit.slice(0, 12)}: ${message}`, file },
      ],
      commit,
    };
  }
  return parseAgentConfig(text ?? '', { file, configProject, commit });
}
