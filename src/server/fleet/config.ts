/**
 * The Fleet's config tracking: reading each agent's config.yaml (through config.ts's
 * loadAgentConfig, the server's only read of it), sharing parsed configs between agents whose
 * file is the same blob, and the access rule that decides which manifest projects of a valid
 * config an agent may have (project-access.ts).
 *
 * - A new config-project commit re-resolves only the agents whose config.yaml blob changed
 *   (GitSource.fileId); the others keep their parsed configuration untouched.
 * - At most CONFIG_READS_IN_FLIGHT reads and parses at once: a server starting with 10,000 agents
 *   would otherwise hold 10,000 half-done reads at the same moment (hundreds of MiB of short-lived
 *   garbage, and a heap that stays that large long after).
 */
import type { AgentConfig, GitSource } from '../ports.js';
import type { ConfigMessage, ManifestProjectConfig, ProblemReport } from '../../protocol/messages.js';
import { ProblemCode } from '../../protocol/problems.js';
import { BoundedMap, Limiter } from '../../common/map-limit.js';
import { agentConfigPath, loadAgentConfig, type ParsedAgentConfig } from '../config.js';
import { allowCommand, projectAccess } from '../project-access.js';
import type { AgentRecord } from '../registry.js';

/** Config reads in flight at once (see the header). */
export const CONFIG_READS_IN_FLIGHT = 32;
/** Parsed valid configs kept per (config project, blob id): agents with the same file share one. */
const PARSED_CONFIGS = 1024;

const DEFAULT_SETTINGS: ConfigMessage['settings'] = { drift: { mode: 'correct', ignore: [] } };

/** A valid config.yaml as parsed (before the access rule), with the line of each manifest project. */
export interface ParsedConfig {
  config: AgentConfig;
  projectLines?: readonly (number | undefined)[];
  /** Line and column of each manifest project's globs, to place a problem found when reading files. */
  globPositions?: ParsedAgentConfig['globPositions'];
}

/** What one read found: the same blob as last time, or a parse result (and the blob it came from). */
export type ConfigRead = { unchanged: true } | { unchanged: false; result: ParsedAgentConfig; blob?: string };

/** Reads agents' config.yaml files, a bounded number at a time, parsing each blob once. */
export class ConfigReader {
  /** Valid configs by `configProject \0 blob id`: a blob's content never changes, so neither does its config. */
  private readonly parsed = new BoundedMap<ParsedConfig>(PARSED_CONFIGS);
  private readonly reads = new Limiter(CONFIG_READS_IN_FLIGHT);

  constructor(private readonly git: Pick<GitSource, 'readFile' | 'fileId'>) {}

  /**
   * The agent's config.yaml at `commit`, or undefined when `stale()` says, once this read has its
   * turn, that a newer read was started meanwhile (that one does the work). `lastBlob` is the blob
   * of the file last resolved for this agent ('' when absent): the same blob is `unchanged`.
   */
  async read(
    record: Pick<AgentRecord, 'name' | 'configProject'>,
    commit: string,
    lastBlob: string | undefined,
    stale: () => boolean,
  ): Promise<ConfigRead | undefined> {
    return this.reads.run(async () => {
      if (stale()) return undefined;
      const file = agentConfigPath(record.name);
      // Skip files the commit did not touch: 10,000 agents in one config project must not mean
      // 10,000 parses for a change to one of them. A failed lookup reads the file, which says why.
      const blob = this.git.fileId
        ? ((await this.git.fileId(record.configProject, commit, file).catch(() => undefined)) ?? '')
        : undefined;
      if (blob !== undefined && blob === lastBlob) return { unchanged: true };
      const cacheKey = `${record.configProject}\0${blob}`;
      const known = blob ? this.parsed.get(cacheKey) : undefined;
      if (known)
        return {
          unchanged: false,
          blob,
          result: {
            ok: true,
            config: known.config,
            commit,
            projectLines: known.projectLines,
            globPositions: known.globPositions,
          },
        };
      const result = await loadAgentConfig(this.git, {
        configProject: record.configProject,
        agentName: record.name,
        commit,
      });
      // Only valid configs are shared: problems name the agent's own file. The access rule is
      // per agent, so it is applied after this cache, never inside it.
      if (result.ok && blob)
        this.parsed.set(cacheKey, {
          config: result.config,
          projectLines: result.projectLines,
          globPositions: result.globPositions,
        });
      // A file that could not be read (the commit not fetched yet, a Git error) is read again at
      // the next commit even if its blob is the same; a file that parsed with problems is not.
      return { unchanged: false, result, blob: readFailed(result) ? undefined : blob };
    });
  }
}

/** Whether loadAgentConfig could not read the file (a Git error's code, or CONFIG_UNREADABLE), rather than parse it. */
function readFailed(result: ParsedAgentConfig): boolean {
  return (
    !result.ok && result.problems.some((p) => p.code === ProblemCode.CONFIG_UNREADABLE || !p.code.startsWith('CONFIG_'))
  );
}

/**
 * The config an agent may have: `parsed` without the manifest projects the access rule refuses
 * for this agent, and one problem per refusal (file:line, project, rule, and the operator's fix).
 * When nothing is refused the parsed config object itself is returned, so agents sharing a file
 * keep sharing one config object.
 */
export function enforceAccess(
  record: Pick<AgentRecord, 'name' | 'configProject' | 'allowProjects'>,
  parsed: ParsedConfig,
): { config: AgentConfig; refused: { project: string; problem: ProblemReport }[] } {
  const refused: { project: string; problem: ProblemReport }[] = [];
  const allowed: ManifestProjectConfig[] = [];
  const file = agentConfigPath(record.name);
  parsed.config.projects.forEach((cfg, i) => {
    const decision = projectAccess(record, cfg.id);
    if (decision.allowed) {
      allowed.push(cfg);
      return;
    }
    const line = parsed.projectLines?.[i];
    refused.push({
      project: cfg.id,
      problem: {
        code: ProblemCode.CONFIG_PROJECT_NOT_ALLOWED,
        message: `${file}${line ? `:${line}` : ''}: gitops.manifest_projects[${i}].id: ${decision.reason}; it is not read. An operator can allow it with \`${allowCommand(record.name, cfg.id)}\``,
        file,
        ...(line ? { line } : {}),
      },
    });
  });
  if (refused.length === 0) return { config: parsed.config, refused };
  return { config: { ...parsed.config, projects: allowed }, refused };
}

/** Whether two configs in force are the same (the same object when agents share a file). */
export function sameConfig(a: AgentConfig | undefined, b: AgentConfig): boolean {
  return a === b || (a !== undefined && JSON.stringify(a) === JSON.stringify(b));
}

/** The `config` message for a config in force and its problems. */
export function configMessage(config: AgentConfig, errors: ProblemReport[]): ConfigMessage {
  return {
    type: 'config',
    settings: config.settings ?? DEFAULT_SETTINGS,
    projects: config.projects.map((p) => p.id),
    errors,
  };
}
