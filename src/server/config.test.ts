import { describe, expect, it } from '@jest/globals';
import { DEFAULT_GLOB, loadAgentConfig, parseAgentConfig } from './config.js';
import type { AgentConfigResult } from './ports.js';

const FILE = '.gitlab/agents/agent1/config.yaml';
const COMMIT = 'a'.repeat(40);
const parse = (text: string): AgentConfigResult => parseAgentConfig(text, { file: FILE, configProject: 'group/kubernetes-agent', commit: COMMIT });

function ok(text: string) {
  const r = parse(text);
  if (!r.ok) throw new Error(`expected a valid config, got ${JSON.stringify(r.problems)}`);
  return r.config;
}
function problems(text: string) {
  const r = parse(text);
  if (r.ok) throw new Error('expected problems, got a valid config');
  return r.problems;
}

describe('parseAgentConfig', () => {
  it('resolves the seed scenario with every GitLab default', () => {
    const config = ok(`gitops:\n  manifest_projects:\n  - id: gitops-project\n    paths:\n    - glob: '/**/*.yaml'\n`);
    expect(config.projects).toEqual([
      {
        id: 'gitops-project',
        ref: {},
        defaultNamespace: 'default',
        paths: [{ glob: '/**/*.yaml' }],
        reconcileTimeoutMs: 3_600_000,
        dryRunStrategy: 'none',
        prune: true,
        pruneTimeoutMs: 3_600_000,
        prunePropagationPolicy: 'foreground',
        inventoryPolicy: 'must_match',
      },
    ]);
    expect(config.settings).toEqual({ drift: { mode: 'correct', ignore: [] } });
    expect(config.unusedSections).toEqual([]);
  });

  it('defaults the project id to the config project and the globs to every YAML and JSON file', () => {
    const [p] = ok('gitops:\n  manifest_projects:\n  - default_namespace: apps\n').projects;
    expect(p.id).toBe('group/kubernetes-agent');
    expect(p.paths).toEqual([{ glob: DEFAULT_GLOB }]);
    expect(p.defaultNamespace).toBe('apps');
  });

  it('takes every key GitLab defines, with durations in Go syntax', () => {
    const [p] = ok(`gitops:
  manifest_projects:
  - id: g/p
    ref:
      tag: v1.2.0
    reconcile_timeout: 1h30m
    dry_run_strategy: server
    prune: false
    prune_timeout: 90s
    prune_propagation_policy: background
    inventory_policy: adopt_all
`).projects;
    expect(p).toMatchObject({ ref: { tag: 'v1.2.0' }, reconcileTimeoutMs: 5_400_000, dryRunStrategy: 'server', prune: false, pruneTimeoutMs: 90_000, prunePropagationPolicy: 'background', inventoryPolicy: 'adopt_all' });
    expect(ok('gitops:\n  manifest_projects:\n  - ref: {branch: release}\n').projects[0].ref).toEqual({ branch: 'release' });
    expect(ok(`gitops:\n  manifest_projects:\n  - ref: {commit: ${'b'.repeat(40)}}\n`).projects[0].ref).toEqual({ commit: 'b'.repeat(40) });
  });

  it('treats an empty file, or one with only comments, as a valid config with no projects', () => {
    for (const text of ['', '# nothing yet\n', 'gitops:\n']) {
      expect(ok(text)).toEqual({ settings: { drift: { mode: 'correct', ignore: [] } }, projects: [], unusedSections: [] });
    }
  });

  it('reads the log level from observability and the drift extension from gitops', () => {
    const config = ok(`observability:
  logging:
    level: debug
gitops:
  drift:
    mode: detect
    ignore:
    - kind: Deployment
      paths: [/spec/replicas]
`);
    expect(config.settings).toEqual({ logLevel: 'debug', drift: { mode: 'detect', ignore: [{ kind: 'Deployment', paths: ['/spec/replicas'] }] } });
  });

  it('accepts the other sections GitLab defines and lists them as unused', () => {
    const config = ok(`ci_access:
  projects:
  - id: group/app
user_access:
  access_as: {agent: {}}
container_scanning:
  cadence: '0 0 * * *'
remote_development:
  enabled: true
flux:
  webhook_receiver_url: http://receiver
starboard: {}
observability:
  logging:
    grpc_level: warn
`);
    expect(config.unusedSections).toEqual(['ci_access', 'user_access', 'container_scanning', 'remote_development', 'flux', 'starboard', 'observability.logging.grpc_level']);
  });

  it('names file, line and key for an unknown key at any depth', () => {
    const found = problems(`gitops:
  manifest_projects:
  - id: a
    pathz:
    - glob: x
surprise: 1
`);
    expect(found).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: 'CONFIG_UNKNOWN_KEY', file: FILE, line: 4, message: expect.stringMatching(/^\.gitlab\/agents\/agent1\/config\.yaml:4: unknown key gitops\.manifest_projects\[0\]\.pathz/) }),
        expect.objectContaining({ code: 'CONFIG_UNKNOWN_KEY', line: 6, message: expect.stringContaining('unknown key surprise') }),
      ]),
    );
    expect(found).toHaveLength(2);
  });

  it('lists every bad value with its line, not just the first', () => {
    const found = problems(`gitops:
  manifest_projects:
  - id: a
    dry_run_strategy: sometimes
    prune: yes please
    reconcile_timeout: soon
    inventory_policy: adopt
    ref:
      branch: main
      tag: v1
`);
    const byLine = Object.fromEntries(found.map((p) => [p.line, p.message]));
    expect(byLine[4]).toMatch(/dry_run_strategy: must be one of none, client, server/);
    expect(byLine[5]).toMatch(/prune: expected a boolean/);
    expect(byLine[6]).toMatch(/reconcile_timeout: invalid duration "soon"/);
    expect(byLine[7]).toMatch(/inventory_policy: must be one of must_match, adopt_if_no_inventory, adopt_all/);
    expect(found.some((p) => p.line === 9 && /set only one of branch, tag and commit/.test(p.message))).toBe(true);
    expect(found.every((p) => p.code === 'CONFIG_INVALID_VALUE')).toBe(true);
  });

  it('refuses gitops.charts and says what to do instead', () => {
    const [p] = problems('gitops:\n  charts:\n  - release_name: x\n');
    expect(p).toMatchObject({ code: 'CONFIG_CHARTS_UNSUPPORTED', line: 2 });
    expect(p.message).toMatch(/helm template/);
    expect(p.message).toMatch(/Flux/);
  });

  it('reports YAML syntax errors and duplicate keys with their line', () => {
    expect(problems('gitops:\n  manifest_projects: [\n')[0]).toMatchObject({ code: 'CONFIG_YAML_INVALID', file: FILE });
    const dup = problems('gitops: {}\ngitops: {}\n');
    expect(dup[0]).toMatchObject({ code: 'CONFIG_YAML_INVALID', line: 2 });
  });

  it('rejects a file that is not a mapping, several documents, and a project listed twice', () => {
    expect(problems('- a\n- b\n')[0].message).toMatch(/must be a mapping/);
    expect(problems('gitops: {}\n---\ngitops: {}\n')[0]).toMatchObject({ line: 3, message: expect.stringMatching(/one YAML document/) });
    const twice = problems('gitops:\n  manifest_projects:\n  - id: a\n  - id: a\n');
    expect(twice[0]).toMatchObject({ line: 4, message: expect.stringMatching(/already listed/) });
  });

  it('rejects bad drift rules and log levels', () => {
    const found = problems(`observability:
  logging:
    level: verbose
gitops:
  drift:
    mode: fix
    ignore:
    - kind: Deployment
      paths: [spec.replicas]
`);
    expect(found.map((p) => p.line).sort()).toEqual([3, 6, 9]);
  });
});

describe('loadAgentConfig', () => {
  const at = (files: Record<string, string>, fail?: Error) => ({
    readFile: async (_project: string, _commit: string, path: string) => {
      if (fail) throw fail;
      return files[path];
    },
  });
  const opts = { configProject: 'group/agents', agentName: 'agent1', commit: COMMIT };

  it('reads .gitlab/agents/<name>/config.yaml from the config project', async () => {
    const r = await loadAgentConfig(at({ '.gitlab/agents/agent1/config.yaml': 'gitops:\n  manifest_projects:\n  - paths: [{glob: /x/*.yaml}]\n' }), opts);
    expect(r).toMatchObject({ ok: true, commit: COMMIT, config: { projects: [{ id: 'group/agents', paths: [{ glob: '/x/*.yaml' }] }] } });
  });

  it('treats a missing file as a valid config with no projects', async () => {
    expect(await loadAgentConfig(at({}), opts)).toMatchObject({ ok: true, config: { projects: [] } });
  });

  it('turns a read failure into a problem naming the file', async () => {
    const r = await loadAgentConfig(at({}, new Error('too large')), opts);
    expect(r).toMatchObject({ ok: false, problems: [{ code: 'CONFIG_UNREADABLE', file: '.gitlab/agents/agent1/config.yaml' }] });
  });
});
