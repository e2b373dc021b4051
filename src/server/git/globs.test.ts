import { describe, expect, it } from '@jest/globals';
import { DEFAULT_GLOB } from '../config.js';
import { createPathMatcher } from './globs.js';

describe('createPathMatcher', () => {
  const table: [glob: string, path: string, matches: boolean][] = [
    ['/**/*.yaml', 'manifest.yaml', true],
    ['/**/*.yaml', 'apps/web/deploy.yaml', true],
    ['/**/*.yaml', 'apps/web/deploy.yml', false],
    ['**/*.yaml', 'manifest.yaml', true],
    ['/*.yaml', 'manifest.yaml', true],
    ['/*.yaml', 'apps/deploy.yaml', false],
    ['*.yaml', 'apps/deploy.yaml', false],
    ['/team1/app1/*.yaml', 'team1/app1/a.yaml', true],
    ['/team1/app1/*.yaml', 'team1/app1/sub/a.yaml', false],
    ['/team1/**/*.yaml', 'team1/a.yaml', true],
    ['/team1/**/*.yaml', 'team2/a.yaml', false],
    ['manifests/**', 'manifests/a/b/c.json', true],
    [DEFAULT_GLOB, 'a.yml', true],
    [DEFAULT_GLOB, 'deep/er/a.json', true],
    [DEFAULT_GLOB, 'README.md', false],
    [DEFAULT_GLOB, '.gitlab/agents/agent1/config.yaml', false],
    [DEFAULT_GLOB, 'apps/.hidden/a.yaml', false],
    [DEFAULT_GLOB, '.gitlab-ci.yml', false],
    ['/.gitlab/**/*.yaml', '.gitlab/agents/a/config.yaml', false],
    ['/apps/{web,api}/*.yaml', 'apps/api/x.yaml', true],
    ['/apps/{web,api}/*.yaml', 'apps/db/x.yaml', false],
    ['/apps/?.yaml', 'apps/a.yaml', true],
  ];
  it.each(table)('glob %s on %s → %s', (glob, path, expected) => {
    expect(createPathMatcher([glob]).matches(path)).toBe(expected);
  });

  it('matches when any of several globs matches', () => {
    const m = createPathMatcher(['/a/*.yaml', '/b/*.json']);
    expect([m.matches('a/x.yaml'), m.matches('b/x.json'), m.matches('a/x.json')]).toEqual([true, true, false]);
  });

  it('lets the walk skip directories no glob can reach, and dot-directories always', () => {
    const m = createPathMatcher(['/team1/app1/**/*.yaml']);
    expect(m.mayContain('team1')).toBe(true);
    expect(m.mayContain('team1/app1/sub')).toBe(true);
    expect(m.mayContain('team2')).toBe(false);
    expect(createPathMatcher([DEFAULT_GLOB]).mayContain('anything/at/all')).toBe(true);
    expect(createPathMatcher([DEFAULT_GLOB]).mayContain('.git')).toBe(false);
  });
});
