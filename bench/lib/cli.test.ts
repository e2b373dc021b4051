import { describe, expect, it } from '@jest/globals';
import path from 'node:path';
import { HelpRequested, parseArgs, renderTable } from './cli.js';
import { SCENARIOS, meetsGoals, objectSet, type ScenarioResult } from './context.js';

describe('parseArgs', () => {
  it('runs every scenario at the issue sizes by default', () => {
    expect(parseArgs([])).toEqual({
      scenarios: [...SCENARIOS],
      objects: 1000,
      agents: 1000,
      edits: 200,
      commits: 50,
      rollouts: 10,
      quick: false,
    });
  });

  it('shrinks sizes, edits and commits with --quick, and explicit sizes still win', () => {
    expect(parseArgs(['--quick'])).toMatchObject({
      objects: 100,
      agents: 100,
      edits: 40,
      commits: 10,
      rollouts: 3,
      quick: true,
    });
    expect(parseArgs(['--quick', '--agents', '10000'])).toMatchObject({ objects: 100, agents: 10000 });
  });

  it('runs commit-to-healthy first, before any other scenario creates Deployments that could land on its node', () => {
    expect(SCENARIOS[0]).toBe('commit-to-healthy');
  });

  it('keeps the fixed scenario order whatever order they are named in', () => {
    expect(parseArgs(['--scenario', 'fan-out,initial-sync']).scenarios).toEqual(['initial-sync', 'fan-out']);
    expect(parseArgs(['--scenario=drift-revert']).scenarios).toEqual(['drift-revert']);
  });

  it('resolves the --json file to an absolute path', () => {
    expect(parseArgs(['--json', 'out.jsonl']).json).toBe(path.resolve('out.jsonl'));
  });

  it('names the mistake: an unknown scenario, a bad number, an unknown flag', () => {
    expect(() => parseArgs(['--scenario', 'initial-sync,warp'])).toThrow(/unknown warp/);
    expect(() => parseArgs(['--objects', '0'])).toThrow(/--objects: expected a positive integer, got 0/);
    expect(() => parseArgs(['--agents', 'many'])).toThrow(/--agents/);
    expect(() => parseArgs(['--fast'])).toThrow(/unknown argument --fast/);
    expect(() => parseArgs(['--json'])).toThrow(/--json: a file name is required/);
  });

  it('answers --help with the usage rather than running', () => {
    expect(() => parseArgs(['--help'])).toThrow(HelpRequested);
  });
});

describe('meetsGoals', () => {
  it('passes only when every goal metric is present and within its bound', () => {
    expect(meetsGoals({ p50_ms: 20, p99_ms: 99 }, { p50_ms: { max: 20 }, p99_ms: { max: 100 } })).toBe(true);
    expect(meetsGoals({ p50_ms: 20.1, p99_ms: 99 }, { p50_ms: { max: 20 } })).toBe(false);
    expect(meetsGoals({ p50_ms: NaN }, { p50_ms: { max: 20 } })).toBe(false);
    expect(meetsGoals({}, { writes: { max: 0 } })).toBe(false);
  });
});

describe('renderTable', () => {
  it('shows each metric beside its goal, marks the missed one, and lists baselines and notes', () => {
    const result: ScenarioResult = {
      scenario: 'unchanged-resync',
      objects: 1000,
      metrics: { seconds: 0.5, writes: 0 },
      baseline: { seconds: 0.04 },
      goals: { seconds: { max: 0.3 }, writes: { max: 0 } },
      pass: false,
      load: [1, 2, 3],
      notes: ['machine busy'],
    };
    const text = renderTable([result]);
    expect(text).toContain('unchanged-resync (N=1000)  MISSES a goal  load 1 2 3');
    expect(text).toMatch(/seconds\s+0\.5\s+goal <= 0\.3\s+MISSED/);
    expect(text).toMatch(/writes\s+0\s+goal <= 0\s+ok/);
    expect(text).toContain('baseline: seconds=0.04');
    expect(text).toContain('note: machine busy');
  });

  it('says why a skipped scenario has no numbers', () => {
    const result: ScenarioResult = {
      scenario: 'commit-to-healthy',
      objects: 1,
      metrics: {},
      baseline: {},
      goals: {},
      pass: false,
      load: [1, 2, 3],
      skipped: 'this machine cannot run a node: root',
    };
    expect(renderTable([result])).toBe('commit-to-healthy  SKIPPED: this machine cannot run a node: root');
  });
});

describe('objectSet', () => {
  it('is the issue mix: half ConfigMaps, a tenth Secrets with stringData, a fifth Services, the rest Deployments with normalisable quantities, after their Namespace', () => {
    const set = objectSet(1000, 'ns1');
    expect(set[0]).toEqual({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns1' } });
    const count = (kind: string): number => set.filter((o) => o.kind === kind).length;
    expect([count('ConfigMap'), count('Secret'), count('Service'), count('Deployment')]).toEqual([500, 100, 200, 200]);
    expect(set.slice(1).every((o) => o.metadata.namespace === 'ns1')).toBe(true);
    expect(set.find((o) => o.kind === 'Secret')).toHaveProperty('stringData');
    expect(JSON.stringify(set.find((o) => o.kind === 'Deployment'))).toContain(
      '"requests":{"cpu":"0.5","memory":"1024Mi"}',
    );
  });
});
