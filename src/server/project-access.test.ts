import { describe, expect, it } from '@jest/globals';
import { allowCommand, projectAccess, topLevelGroup, type AccessRule, type AgentAccess } from './project-access.js';

describe('projectAccess', () => {
  const cases: [string, AgentAccess, string, AccessRule | 'refused'][] = [
    // its own config project
    ['config project itself', { configProject: 'acme/platform/agents' }, 'acme/platform/agents', 'config-project'],
    ['root-level config project itself', { configProject: 'kubernetes-agent' }, 'kubernetes-agent', 'config-project'],
    // the config project's top-level group, subgroups included
    ['sibling in the same subgroup', { configProject: 'acme/platform/agents' }, 'acme/platform/apps', 'same-group'],
    [
      'project directly in the top-level group',
      { configProject: 'acme/platform/agents' },
      'acme/manifests',
      'same-group',
    ],
    [
      'deeper subgroup of the top-level group',
      { configProject: 'acme/platform/agents' },
      'acme/teams/a/b/manifests',
      'same-group',
    ],
    ['another top-level group', { configProject: 'acme/platform/agents' }, 'tenant-b/secret-manifests', 'refused'],
    [
      'a group whose name starts with the same letters',
      { configProject: 'acme/agents' },
      'acme-evil/manifests',
      'refused',
    ],
    [
      'a root-level project from a grouped config project',
      { configProject: 'acme/agents' },
      'gitops-project',
      'refused',
    ],
    [
      'case differs (may be another tenant on a case-sensitive host)',
      { configProject: 'acme/agents' },
      'ACME/manifests',
      'refused',
    ],
    // a config project at the root level
    [
      'root level: another root-level project',
      { configProject: 'kubernetes-agent' },
      'gitops-project',
      'same-root-level',
    ],
    ['root level: a project inside a group', { configProject: 'kubernetes-agent' }, 'tenant-b/x', 'refused'],
    // what the registry allows
    [
      'allowed exact path',
      { configProject: 'kubernetes-agent', allowProjects: ['tenant-b/secret-manifests'] },
      'tenant-b/secret-manifests',
      'allowed-project',
    ],
    [
      'an exact path allows only itself',
      { configProject: 'kubernetes-agent', allowProjects: ['tenant-b/secret-manifests'] },
      'tenant-b/other',
      'refused',
    ],
    [
      'an exact path is not a prefix',
      { configProject: 'kubernetes-agent', allowProjects: ['tenant-b/secret'] },
      'tenant-b/secret-manifests',
      'refused',
    ],
    [
      'an exact path does not allow what is below it',
      { configProject: 'kubernetes-agent', allowProjects: ['tenant-b/sub'] },
      'tenant-b/sub/x',
      'refused',
    ],
    [
      'allowed group prefix',
      { configProject: 'kubernetes-agent', allowProjects: ['tenant-b/'] },
      'tenant-b/secret-manifests',
      'allowed-group',
    ],
    [
      'allowed group prefix covers subgroups',
      { configProject: 'acme/agents', allowProjects: ['tenant-b/'] },
      'tenant-b/x/y',
      'allowed-group',
    ],
    [
      'a group prefix is not a string prefix',
      { configProject: 'acme/agents', allowProjects: ['tenant-b/'] },
      'tenant-bb/x',
      'refused',
    ],
    [
      'a subgroup prefix does not allow its parent group',
      { configProject: 'acme/agents', allowProjects: ['tenant-b/apps/'] },
      'tenant-b/db',
      'refused',
    ],
    ['a bare "/" allows nothing', { configProject: 'acme/agents', allowProjects: ['/'] }, 'tenant-b/x', 'refused'],
    ['an empty entry allows nothing', { configProject: 'acme/agents', allowProjects: [''] }, 'tenant-b/x', 'refused'],
    [
      'the second entry matches',
      { configProject: 'acme/agents', allowProjects: ['x/', 'tenant-b/x'] },
      'tenant-b/x',
      'allowed-project',
    ],
  ];
  it.each(cases)('%s', (_what, agent, project, expected) => {
    const decision = projectAccess(agent, project);
    if (expected === 'refused') {
      expect(decision.allowed).toBe(false);
    } else {
      expect(decision).toMatchObject({ allowed: true, rule: expected });
    }
  });

  it('names the project and the hierarchy in a refusal', () => {
    expect(projectAccess({ configProject: 'acme/platform/agents' }, 'tenant-b/secret-manifests')).toEqual({
      allowed: false,
      reason:
        "tenant-b/secret-manifests is outside the group hierarchy of this agent's config project acme/platform/agents (acme/ and its subgroups), and the registry does not allow it for this agent",
    });
    expect(projectAccess({ configProject: 'kubernetes-agent' }, 'tenant-b/x')).toEqual({
      allowed: false,
      reason:
        "tenant-b/x is outside the root level of this agent's config project kubernetes-agent (only other root-level projects), and the registry does not allow it for this agent",
    });
  });

  it('says which allow entry matched', () => {
    expect(projectAccess({ configProject: 'a/b', allowProjects: ['tenant-b/'] }, 'tenant-b/x')).toEqual({
      allowed: true,
      rule: 'allowed-group',
      entry: 'tenant-b/',
    });
  });
});

describe('topLevelGroup', () => {
  it.each([
    ['acme/platform/agents', 'acme'],
    ['acme/agents', 'acme'],
    ['kubernetes-agent', undefined],
  ])('%s → %s', (project, group) => {
    expect(topLevelGroup(project)).toBe(group);
  });
});

describe('allowCommand', () => {
  it('is the CLI command an operator runs', () => {
    expect(allowCommand('agent1', 'tenant-b/secret-manifests')).toBe(
      'gitops-server agent allow agent1 --project tenant-b/secret-manifests',
    );
  });
});
