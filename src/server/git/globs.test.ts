import { describe, expect, it } from '@jest/globals';
import { DEFAULT_GLOB } from '../config.js';
import {
  MAX_ALTERNATIVES,
  MAX_GLOB_LENGTH,
  MAX_PATH_LENGTH,
  createPathMatcher,
  expandBraces,
  globProblem,
} from './globs.js';

/*
 * GitLab's verdict, glob x path: each row is what kas v16.5 did with the glob (one leading `/`
 * trimmed, files inside dot-directories skipped, then doublestar v2.0.4's Match) for each of
 * PATHS: `1` matched, `.` not matched, `E` doublestar's ErrBadPattern (the sync fails). The rows
 * were produced by running doublestar v2.0.4 itself (its source at tag v2.0.4) over these pairs,
 * not by this engine. Where a row has an `E`, the glob is refused here when compiled: doublestar
 * only notices when a path reaches the malformed part, this engine checks the whole glob up front.
 */
const PATHS: readonly string[] = [
  'a.yaml',
  'b.yaml',
  'd.yaml',
  '!.yaml',
  '].yaml',
  '!].yaml',
  'ab.yaml',
  'a.yml',
  'a.json',
  'a.yaml.j2',
  'a',
  'x',
  'xa',
  'ax',
  'a.x',
  '.hidden.yaml',
  '.yaml',
  '.gitlab-ci.yml',
  'README.md',
  '*.yaml',
  'a{b}.yaml',
  '!(a).yaml',
  '@(a|b).yaml',
  '+(a).yaml',
  '!secret.yaml',
  'a}.yaml',
  'a,b.yaml',
  'abd.yaml',
  'ace.yaml',
  'xxaxxbxx.yaml',
  'xxbxxaxx.yaml',
  'manifests/a.yaml',
  'manifests/b/c.yaml',
  'manifests',
  'manifests/x/y/z.json',
  'a/b.yaml',
  'a/x/b.yaml',
  'a/x/y/b.yaml',
  'a/x.yaml',
  'b/x.yaml',
  'c/x.yaml',
  'a/b/x.yaml',
  'a/b/c/x.yaml',
  'x/z.yaml',
  'x/y/z.yaml',
  'x/q/z.yaml',
  'x/a/b/z.yaml',
  'apps/web/deploy.yaml',
  'apps/api/x/deploy.yaml',
  'apps/web/.env.yaml',
  'apps/.hidden/a.yaml',
  '.gitlab/agents/a/config.yaml',
  'dir/.hidden/x.yaml',
  'dir/.x.yaml',
  'a/a.yaml',
  'x.yaml',
  'x.yml.j2',
  'xx',
  'xab',
  '-.yaml',
  'z.yaml',
];

const DOUBLESTAR_V2: readonly [glob: string, row: string][] = [
  ['**/*.{yaml,yml,json}', '111111111......111.11111111111111.1111111111111111...111...11'],
  ['/**/*.yaml', '1111111........11..11111111111111..111111111111111...111...11'],
  ['**/*.yaml', '1111111........11..11111111111111..111111111111111...111...11'],
  ['*.yaml', '1111111........11..111111111111........................1...11'],
  ['/*.yaml', '1111111........11..111111111111........................1...11'],
  ['*', '1111111111111111111111111111111..1.....................111111'],
  ['**', '11111111111111111111111111111111111111111111111111...11111111'],
  ['/**', '11111111111111111111111111111111111111111111111111...11111111'],
  ['manifests/**', '...............................11.1..........................'],
  ['manifests/**/*.yaml', '...............................11............................'],
  ['manifests/*.yaml', '...............................1.............................'],
  ['./manifests/*.yaml', '.............................................................'],
  ['./*.yaml', '.............................................................'],
  ['//manifests/*.yaml', '.............................................................'],
  ['manifests//a.yaml', '.............................................................'],
  ['manifests/', '.............................................................'],
  ['a/**/b.yaml', '...................................111.......................'],
  ['a/**/**/b.yaml', '...................................111.......................'],
  ['**/**', '11111111111111111111111111111111111111111111111111...11111111'],
  ['a**.yaml', '1.....1.............1....1111................................'],
  ['a/**', '...................................1111..11...........1......'],
  ['**/a/**', '...................................1111..11...1.......1......'],
  ['{a,b}/*.yaml', '...................................1..11..............1......'],
  ['{a/b,c}/*.yaml', '........................................11...................'],
  ['{a/**,c}/x.yaml', '......................................1.111..................'],
  ['x/{**,y}/z.yaml', '............................................11...............'],
  ['{**,x}/a.yaml', '...............................1......................1......'],
  ['*{,.x}', '..............1..............................................'],
  ['*.{yaml,yml}{,.j2}', '11111111.1.....111.111111111111........................11..11'],
  ['{,a}*.yaml', '1111111........11..111111111111........................1...11'],
  ['[abc].yaml', '11...........................................................'],
  ['[a-c].yaml', '11...........................................................'],
  ['[^a-c].yaml', '..111..............1...................................1...11'],
  ['[!a].yaml', '1..1.........................................................'],
  ['[!]].yaml', '.....1.......................................................'],
  ['[]a].yaml', 'EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE'],
  ['[z-a].yaml', '.............................................................'],
  ['[a/b].yaml', '11...........................................................'],
  ['[a-].yaml', 'EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE'],
  ['[-a].yaml', 'EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE'],
  ['[^].yaml', '11111..............1...................................1...11'],
  ['[\\]].yaml', '....1........................................................'],
  ['?.yaml', '11111..............1...................................1...11'],
  ['??.yaml', '.....11..................1...................................'],
  ['!(a).yaml', '.....................1.......................................'],
  ['@(a|b).yaml', '......................1......................................'],
  ['+(a).yaml', '.......................1.....................................'],
  ['!secret.yaml', '........................1....................................'],
  ['!*.yaml', '...1.1...............1..1....................................'],
  ['a}.yaml', '.........................1...................................'],
  ['a,b.yaml', '..........................1..................................'],
  ['{a}.yaml', '1............................................................'],
  ['{}.yaml', '................1............................................'],
  ['a{b,c{d,e}}.yaml', '......1.....................1................................'],
  ['\\*.yaml', '...................1.........................................'],
  ['a\\{b\\}.yaml', '....................1........................................'],
  ['*a*b*.yaml', '......1.............1.1...11.1...............................'],
  ['x***', '............1................11........................1111..'],
  ['x**', '...........11................11........................1111..'],
  ['.*.yaml', '...............1.............................................'],
  ['.gitlab/**/*.yaml', '.............................................................'],
  ['**/.hidden/*.yaml', '.............................................................'],
  ['*/*.yaml', '...............................1...1..111..1.........11......'],
  ['*/*/*.yaml', '................................1...1....1..11.1.1...........'],
  ['apps/*/deploy.yaml', '...............................................1.............'],
  ['apps/**/deploy.yaml', '...............................................11............'],
  ['apps/{web,api}/**', '...............................................111...........'],
  ['a\\/b.yaml', '.............................................................'],
  ['{a,b', 'EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE'],
  ['a[bc', 'E.....EEEE...EE.....E....EEEE..................EEEE..........'],
  ['a\\', 'E.....EEEE...EE.....E....EEEE..................EEEE..........'],
  ['{*.yaml,**/*.yaml}', '...............................1...1..111..1.........11......'],
  ['{*,a/b}', '1111111111.11111111111111111111..1.....................111111'],
  ['{a,a/}', '.............................................................'],
  ['{a,b}/{x,y/z}.yaml', '......................................11.....................'],
];

describe('createPathMatcher: doublestar v2 as kas used it', () => {
  const cases = DOUBLESTAR_V2.flatMap(([glob, row]) =>
    row.includes('E') ? [] : PATHS.map((path, i) => [glob, path, row[i] === '1'] as const),
  );

  it('has a row of PATHS.length results for every glob', () => {
    for (const [glob, row] of DOUBLESTAR_V2) expect([glob, row.length]).toEqual([glob, PATHS.length]);
    expect(cases.length).toBeGreaterThan(4000);
  });

  it.each(cases)('glob %s on %s → %s', (glob, path, expected) => {
    expect(createPathMatcher([glob]).matches(path)).toBe(expected);
  });

  it.each(DOUBLESTAR_V2.filter(([, row]) => row.includes('E')).map(([glob]) => glob))(
    'refuses %s, which doublestar finds malformed',
    (glob) => {
      expect(() => createPathMatcher([glob])).toThrow(/GIT_BAD_GLOB|glob/);
      expect(globProblem(glob)).toEqual(expect.any(String));
    },
  );

  const named: [what: string, glob: string, path: string, matches: boolean][] = [
    ['dotfiles outside dot-directories are read', DEFAULT_GLOB, '.gitlab-ci.yml', true],
    ['dot-directories are skipped whatever the glob', '**/*.yaml', '.gitlab/agents/a/config.yaml', false],
    ['a ./ prefix matches nothing', './manifests/*.yaml', 'manifests/a.yaml', false],
    ['! is literal', '!secret.yaml', 'secret.yaml', false],
    ['!(…) is literal', '!(a).yaml', '!(a).yaml', true],
    ['@(…) is literal', '@(a|b).yaml', 'a.yaml', false],
    ['[!a] has ! as a member', '[!a].yaml', '!.yaml', true],
    ['a trailing ** needs a segment', 'manifests/**', 'manifests', false],
    ['a // matches nothing', 'manifests//a.yaml', 'manifests/a.yaml', false],
    ['one leading / is trimmed', '/manifests/*.yaml', 'manifests/a.yaml', true],
    ['two leading / match nothing', '//manifests/*.yaml', 'manifests/a.yaml', false],
    ['** from a brace in its segment is *', 'x/{**,y}/z.yaml', 'x/a/b/z.yaml', false],
    ['a sibling wanting more segments vetoes', '{*.yaml,**/*.yaml}', 'a.yaml', false],
    ['…and matches one level down', '{*.yaml,**/*.yaml}', 'a/x.yaml', true],
  ];
  it.each(named)('%s (%s on %s → %s)', (_what, glob, path, expected) => {
    expect(createPathMatcher([glob]).matches(path)).toBe(expected);
  });

  it('says which globs of a list match a path (a file matched by two is an error upstream)', () => {
    const m = createPathMatcher(['/a/*.yaml', '**/*.yaml', '/b/*.json']);
    expect([m.matching('a/x.yaml'), m.matching('b/x.json'), m.matching('c/x.txt')]).toEqual([[0, 1], [2], []]);
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
    expect(createPathMatcher([DEFAULT_GLOB]).mayContain('apps/.hidden')).toBe(false);
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
      for (let i = 1; i < parts.length; i++)
        expect([glob, parts.slice(0, i).join('/'), m.mayContain(parts.slice(0, i).join('/'))]).toEqual([
          glob,
          parts.slice(0, i).join('/'),
          true,
        ]);
    }
  });

  const bad: [glob: string, why: RegExp][] = [
    ['/a[bc.yaml', /never closed/],
    ['/a{b,c.yaml', /never closed/],
    ['/a\\', /lone/],
    ['/[]a].yaml', /empty/],
    ['/[a-].yaml', /both sides/],
    ['/[-a].yaml', /both sides/],
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
    const deep = `${'{a,'.repeat(100)}b${'}'.repeat(100)}`;
    expect(expandBraces(deep)).toEqual(['a', 'b']);
    const wide = `{${Array.from({ length: 300 }, (_, i) => String.fromCharCode(0x4e00 + i)).join(',')}}`;
    expect(() => expandBraces(wide)).toThrow(/more than 256/);
    expect(() => createPathMatcher(Array.from({ length: 9 }, (_, i) => `/${i}/${'{a,b}'.repeat(8)}`))).toThrow(
      /2048 alternatives in all/,
    );
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
