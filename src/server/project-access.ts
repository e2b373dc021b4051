/**
 * Which manifest projects an agent may read: the authorization rule between an agent (its config
 * project and its registry record) and the projects its config.yaml names. Pure; the fleet
 * enforces it before it watches or reads a manifest project.
 *
 * A config.yaml is written by whoever can push to the config project, so without a rule one
 * tenant's file could name another tenant's project and receive its Secrets. GitLab's agent
 * allowed only its config project and public projects; here an agent may read:
 * 1. its config project;
 * 2. every project in the config project's top-level group, subgroups included (config project
 *    `acme/platform/agents` → `acme/**`). A config project at the root level (no group, as in a
 *    local `--git-root` or the seed scenario's `kubernetes-agent`) may read the other root-level
 *    projects only, never one inside a group;
 * 3. what the registry allows for the agent (`allowProjects`, set by an operator): an exact
 *    project path `group/name`, or a group prefix ending in `/` (`tenant-b/`: that group and its
 *    subgroups).
 * Paths compare exactly, case included: on a case-sensitive Git host `Acme/x` and `acme/x` may be
 * different tenants', so a refusal (fixable by writing the path as the host spells it) is the
 * safe answer.
 */

export interface AgentAccess {
  /** The agent's config project (its registry record's `configProject`). */
  configProject: string;
  /** Extra projects or group prefixes (`group/`) the registry allows. */
  allowProjects?: readonly string[];
}

/** Why a project may be read; for logs and tests. */
export type AccessRule = 'config-project' | 'same-group' | 'same-root-level' | 'allowed-project' | 'allowed-group';

export type AccessDecision = { allowed: true; rule: AccessRule; entry?: string } | { allowed: false; reason: string };

/** The config project's top-level group (`acme` for `acme/platform/agents`), or undefined at the root level. */
export function topLevelGroup(configProject: string): string | undefined {
  const slash = configProject.indexOf('/');
  return slash > 0 ? configProject.slice(0, slash) : undefined;
}

/** Whether `entry` (an exact path, or a group prefix ending in `/`) covers `project`. */
function allowEntryCovers(entry: string, project: string): boolean {
  if (entry.endsWith('/')) return entry.length > 1 && project.startsWith(entry) && project.length > entry.length;
  return entry === project;
}

/** May the agent read `project`? The first rule that allows it, or why not. */
export function projectAccess(agent: AgentAccess, project: string): AccessDecision {
  if (project === agent.configProject) return { allowed: true, rule: 'config-project' };
  const group = topLevelGroup(agent.configProject);
  if (group === undefined) {
    if (!project.includes('/')) return { allowed: true, rule: 'same-root-level' };
  } else if (project.startsWith(`${group}/`)) {
    return { allowed: true, rule: 'same-group' };
  }
  for (const entry of agent.allowProjects ?? []) {
    if (allowEntryCovers(entry, project))
      return { allowed: true, rule: entry.endsWith('/') ? 'allowed-group' : 'allowed-project', entry };
  }
  const hierarchy =
    group === undefined
      ? `the root level of this agent's config project ${agent.configProject} (only other root-level projects)`
      : `the group hierarchy of this agent's config project ${agent.configProject} (${group}/ and its subgroups)`;
  return {
    allowed: false,
    reason: `${project} is outside ${hierarchy}, and the registry does not allow it for this agent`,
  };
}

/** The operator's command that allows `project` for `agentName` (named in refusals). */
export function allowCommand(agentName: string, project: string): string {
  return `gitops-server agent allow ${agentName} --project ${project}`;
}
