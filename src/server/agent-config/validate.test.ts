import { describe, expect, it } from '@jest/globals';
import { didYouMean, gitLabDurationFor, parseGitLabDuration } from './validate.js';
import { parseConfigYaml } from './yaml.js';

describe("parseGitLabDuration: protojson's google.protobuf.Duration", () => {
  it.each([
    ['3600s', 3600],
    ['1.5s', 1.5],
    ['.5s', 0.5],
    ['5.s', 5],
    ['0s', 0],
    ['-1s', -1],
    ['0.000000001s', 1e-9],
    ['315576000000s', 315_576_000_000],
    ['315576000001s', undefined],
    ['1.0000000001s', undefined],
    ['01s', undefined],
    ['00s', undefined],
    ['1S', undefined],
    ['1e3s', undefined],
    ['+1s', undefined],
    [' 1s', undefined],
    ['s', undefined],
    ['.s', undefined],
    ['1h', undefined],
    ['3600', undefined],
  ])('%j → %s', (text, seconds) => {
    expect(parseGitLabDuration(text)).toBe(seconds);
  });
});

describe('gitLabDurationFor: the form GitLab wanted', () => {
  it.each([
    ['1h', '3600s'],
    ['90m', '5400s'],
    ['1h30m', '5400s'],
    ['500ms', '0.5s'],
    ['1m30s', '90s'],
    ['2d', '172800s'],
    ['3600', '3600s'],
    [3600, '3600s'],
    ['soon', undefined],
    ['1h soon', undefined],
    [true, undefined],
  ])('%j → %s', (value, form) => {
    expect(gitLabDurationFor(value)).toBe(form);
  });
});

describe('didYouMean', () => {
  const keys = [
    'id',
    'default_namespace',
    'paths',
    'reconcile_timeout',
    'dry_run_strategy',
    'prune',
    'prune_timeout',
    'ref',
  ];
  it.each([
    ['reconcile_timout', 'reconcile_timeout'],
    ['default-namespace', 'default_namespace'],
    ['Prune', 'prune'],
    ['path', 'paths'],
    ['prunee', 'prune'],
    ['namespace', undefined],
    ['idx', undefined], // one typo in a two-letter key is another key
    ['something', undefined],
  ])('%s → %s', (key, meant) => {
    expect(didYouMean(key, keys)).toBe(meant);
  });
});

describe('parseConfigYaml: YAML as go-yaml v2 read it, with positions', () => {
  const read = (text: string): unknown => {
    const r = parseConfigYaml(text, 100);
    if (!r.ok) throw new Error(r.message);
    return r.yaml.value;
  };

  it.each([
    ['a: yes', { a: true }],
    ['a: Off', { a: false }],
    ['a: y', { a: true }],
    ['a: N', { a: false }],
    ['a: 0x1F', { a: 31 }],
    ['a: 0777', { a: 511 }],
    ['a: 2024-01-01', { a: '2024-01-01' }],
    ['a: 1:30', { a: '1:30' }],
    ['a: ~', { a: null }],
    ['a: 1\na: 2', { a: 2 }],
    ['a: &x {b: 1}\nc:\n  <<: *x\n  d: 2', { a: { b: 1 }, c: { b: 1, d: 2 } }],
    ['a: 1\n---\nb: [', { a: 1 }],
  ])('%j', (text, value) => {
    expect(read(text)).toEqual(value);
  });

  it("names the line and column of keys and values, and of an empty value's key", () => {
    const r = parseConfigYaml('gitops:\n  manifest_projects:\n  - id:\n    prune: maybe\n', 100);
    if (!r.ok) throw new Error(r.message);
    expect(r.yaml.keyAt(['gitops', 'manifest_projects', 0, 'prune'])).toEqual({ line: 4, column: 5 });
    expect(r.yaml.valueAt(['gitops', 'manifest_projects', 0, 'prune'])).toEqual({ line: 4, column: 12 });
    expect(r.yaml.valueAt(['gitops', 'manifest_projects', 0, 'id'])).toEqual({ line: 3, column: 5 });
    // A key that is not there: its nearest parent.
    expect(r.yaml.keyAt(['gitops', 'manifest_projects', 0, 'ref', 'branch'])).toEqual({ line: 3, column: 5 });
  });

  it('gives a syntax error its line and column', () => {
    expect(parseConfigYaml('gitops:\n\tmanifest_projects: []\n', 100)).toMatchObject({
      ok: false,
      position: { line: 2 },
    });
  });
});
