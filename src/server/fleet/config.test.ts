import { describe, expect, it } from '@jest/globals';
import type { AgentConfig } from '../ports.js';
import { enforceAccess } from './config.js';

describe('enforceAccess', () => {
  const project = (id: string) => ({
    id,
    ref: {},
    defaultNamespace: 'default',
    paths: [{ glob: '**' }],
    reconcileTimeoutMs: 1,
    dryRunStrategy: 'none' as const,
    prune: true,
    pruneTimeoutMs: 1,
    prunePropagationPolicy: 'foreground' as const,
    inventoryPolicy: 'must_match' as const,
  });
  const config: AgentConfig = {
    settings: { drift: { mode: 'correct', ignore: [] } },
    projects: [project('acme/apps'), project('acme/platform/db')],
    unusedSections: [],
  };

  it('keeps the parsed config object itself when everything is allowed', () => {
    const result = enforceAccess({ name: 'a', configProject: 'acme/agents' }, { config });
    expect(result.config).toBe(config);
    expect(result.refused).toEqual([]);
  });

  it('drops a refused project, names its line, and leaves the rest', () => {
    const result = enforceAccess({ name: 'a', configProject: 'other/agents' }, { config, projectLines: [3, 5] });
    expect(result.config.projects).toEqual([]);
    expect(result.refused.map((r) => [r.project, r.problem.line])).toEqual([
      ['acme/apps', 3],
      ['acme/platform/db', 5],
    ]);
    expect(
      enforceAccess(
        { name: 'a', configProject: 'other/agents', allowProjects: ['acme/platform/'] },
        { config },
      ).config.projects.map((p) => p.id),
    ).toEqual(['acme/platform/db']);
  });
});
