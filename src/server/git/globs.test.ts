import { describe, expect, it } from '@jest/globals';
import { DEFAULT_GLOB } from '../config.js';
import { MAX_ALTERNATIVES, MAX_GLOB_LENGTH, MAX_PATH_LENGTH, createPathMatcher, expandBraces } from './globs.js';

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
    ['manifests/**', 'manifests', true],
    ['manifests/**', 'manifestsx/a.json', false],
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
    ['/apps/?.yaml', 'apps/ab.yaml', false],
    ['/apps/?.yaml', 'apps/é.yaml', true], // one character, not one UTF-16 unit
    ['/apps/?.yaml', 'apps/😀.yaml', true],
    // `**` only as a whole segment; elsewhere it is `*`.
    ['a/**/b.yaml', 'a/b.yaml', true],
    ['a/**/b.yaml', 'a/x/y/z/b.yaml', true],
    ['a/**/**/b.yaml', 'a/b.yaml', true],
    ['a**.yaml', 'abc.yaml', true],
    ['a**.yaml', 'a/b.yaml', false],
    ['**', 'any/thing/at/all.txt', true],
    ['**/x/**', 'a/x/b/c', true],
    ['**/x/**', 'a/y/b/c', false],
    // Classes.
    ['/[abc].yaml', 'b.yaml', true],
    ['/[abc].yaml', 'd.yaml', false],
    ['/[a-c]x.yaml', 'cx.yaml', true],
    ['/[!a-c]x.yaml', 'cx.yaml', false],
    ['/[!a-c]x.yaml', 'dx.yaml', true],
    ['/[^a-c]x.yaml', 'dx.yaml', true],
    ['/[]a].yaml', '].yaml', true],
    ['/[!]].yaml', 'a.yaml', true],
    ['/[!]].yaml', '].yaml', false],
    // Braces: nested, across slashes, empty alternatives.
    ['/{apps/web,lib}/*.yaml', 'apps/web/x.yaml', true],
    ['/{apps/web,lib}/*.yaml', 'lib/x.yaml', true],
    ['/{apps/web,lib}/*.yaml', 'apps/x.yaml', false],
    ['/a{,.prod}.yaml', 'a.yaml', true],
    ['/a{,.prod}.yaml', 'a.prod.yaml', true],
    ['/{a,b{c,d{e,f}}}.yaml', 'bdf.yaml', true],
    ['/{a,b{c,d{e,f}}}.yaml', 'bd.yaml', false],
    ['/{a}.yaml', 'a.yaml', true],
    // Escapes and literals: no extglobs, no negation (GitLab's doublestar has neither).
    ['/\\*.yaml', '*.yaml', true],
    ['/\\*.yaml', 'a.yaml', false],
    ['/a\\{b\\}.yaml', 'a{b}.yaml', true],
    ['/!(a).yaml', '!(a).yaml', true],
    ['/!(a).yaml', 'b.yaml', false],
    ['/@(a|b).yaml', 'a.yaml', false],
    ['/+(a).yaml', '+(a).yaml', true],
    ['!secret.yaml', 'other.yaml', false],
    ['!secret.yaml', '!secret.yaml', true],
    ['/a}.yaml', 'a}.yaml', true],
    ['/a,b.yaml', 'a,b.yaml', true],
    // Stars within a segment.
    ['/*a*b*.yaml', 'xxaxxbxx.yaml', true],
    ['/*a*b*.yaml', 'xxbxxaxx.yaml', false],
    ['/*.yaml', '.yaml', false], // hidden
    ['/x*', 'x', true],
    ['/*x*y', 'axbxcy', true],
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

  const prune: [glob: string, dir: string, may: boolean][] = [
    ['/*.yaml', 'apps', false],
    ['/apps/*.yaml', 'apps', true],
    ['/apps/*.yaml', 'apps/web', false],
    ['/*/prod/*.yaml', 'web', true],
    ['/*/prod/*.yaml', 'web/prod', true],
    ['/*/prod/*.yaml', 'web/dev', false],
    ['/{a,b}/**', 'b/c/d', true],
    ['/{a,b}/**', 'c', false],
    ['/a/**', 'a', true],
    ['/apps', 'apps', false],
  ];
  it.each(prune)('glob %s may contain something under %s → %s', (glob, dir, expected) => {
    expect(createPathMatcher([glob]).mayContain(dir)).toBe(expected);
  });

  it('never prunes a directory holding a match (every prefix of a matching path may contain it)', () => {
    const cases: [string, string][] = [
      ['/a/**/b/*.yaml', 'a/x/b/y/b/c.yaml'],
      ['/{x/y,z}/**/q?.json', 'x/y/p/q1.json'],
      ['**/*.{yaml,yml,json}', 'd/e/f/g.yml'],
      ['/*a*/[bc]*/**', 'xay/c1/z/w'],
    ];
    for (const [glob, path] of cases) {
      const m = createPathMatcher([glob]);
      expect(m.matches(path)).toBe(true);
      const parts = path.split('/');
      for (let i = 1; i < parts.length; i++) expect([glob, parts.slice(0, i).join('/'), m.mayContain(parts.slice(0, i).join('/'))]).toEqual([glob, parts.slice(0, i).join('/'), true]);
    }
  });

  const bad: [glob: string, why: RegExp][] = [
    ['/a[bc.yaml', /never closed/],
    ['/a{b,c.yaml', /never closed/],
    ['/a\\', /lone/],
    ['/[a/b].yaml', /cannot match "\/"/],
    ['/[z-a].yaml', /reversed/],
    ['x'.repeat(MAX_GLOB_LENGTH + 1), /over the limit of 1024/],
    ['{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}', /more than 256 globs/],
    [`{${'a'.repeat(100)},b}`.repeat(8), /more than 256 globs|more than 16384 characters/],
  ];
  it.each(bad)('refuses %s with GIT_BAD_GLOB', (glob, why) => {
    expect(() => createPathMatcher([glob])).toThrow(why);
    try {
      createPathMatcher([glob]);
    } catch (err) {
      expect((err as { code?: string }).code).toBe('GIT_BAD_GLOB');
      expect((err as Error).message.length).toBeLessThan(300); // names the glob, shortened
    }
  });

  it('caps brace expansion before expanding (nesting costs nothing up front)', () => {
    expect(expandBraces('{a,b}'.repeat(8))).toHaveLength(MAX_ALTERNATIVES);
    const deep = `${'{a,'.repeat(200)}b${'}'.repeat(200)}`;
    expect(expandBraces(deep)).toEqual(['a', 'b']);
    const wide = `{${Array.from({ length: 300 }, (_, i) => String.fromCharCode(0x4e00 + i)).join(',')}}`;
    expect(() => expandBraces(wide)).toThrow(/more than 256/);
    expect(() => createPathMatcher(Array.from({ length: 9 }, (_, i) => `/${i}/${'{a,b}'.repeat(8)}`))).toThrow(/2048 alternatives in all/);
  });

  it('never matches paths over the length limit', () => {
    const long = `${'d/'.repeat(MAX_PATH_LENGTH / 2)}a.yaml`;
    expect(createPathMatcher(['**']).matches(long)).toBe(false);
    expect(createPathMatcher(['**']).mayContain(long)).toBe(false);
  });

  it('matches pathological globs in linear time (no backtracking)', () => {
    // picomatch took 22.8 s for the first against a 60-character name.
    const name = 'a'.repeat(120);
    const cases: [string, string][] = [
      ['*a*a*a*a*a*a*a*a*b', name],
      ['/**/*a*a*a*a*a*a*a*a*b', `${'a/'.repeat(30)}${name}`],
      [`/${'**/'.repeat(40)}x`, `${'a/'.repeat(200)}y`],
      [`/${'*a'.repeat(200)}b`, 'a'.repeat(1000)],
      [`/${'{a,*}'.repeat(8)}b`, 'a'.repeat(200)],
      ['/[!b]*[!b]*[!b]*[!b]*[!b]*[!b]*b', 'a'.repeat(300)],
    ];
    for (const [glob, path] of cases) {
      const m = createPathMatcher([glob]);
      const started = performance.now();
      for (let i = 0; i < 1000; i++) m.matches(path);
      const perMatch = (performance.now() - started) / 1000;
      expect([glob.slice(0, 30), m.matches(path)]).toEqual([glob.slice(0, 30), false]);
      // Orders of magnitude above what the engine needs, orders below what backtracking took.
      expect([glob.slice(0, 30), perMatch < 5]).toEqual([glob.slice(0, 30), true]);
    }
    const m = createPathMatcher(['*a*a*a*a*a*a*a*a*b']);
    const started = performance.now();
    for (let i = 0; i < 1000; i++) m.matches('a'.repeat(60));
    expect(performance.now() - started).toBeLessThan(50);
  });
});
