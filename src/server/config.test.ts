import { describe, expect, it } from '@jest/globals';
import { CONFIG_LIMITS, DEFAULT_GLOB, loadAgentConfig, parseAgentConfig, refNameProblem } from './config.js';
import type { AgentConfigResult } from './ports.js';

const FILE = '.gitlab/agents/agent1/config.yaml';
const COMMIT = 'a'.repeat(40);
const project = (lines: string) => `gitops:\n  manifest_projects:\n  - ${lines}\n`;
const parse = (text: string): AgentConfigResult =>
  parseAgentConfig(text, { file: FILE, configProject: 'group/kubernetes-agent', commit: COMMIT });

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

  it('takes every key GitLab defines, with durations in seconds as GitLab wrote them', () => {
    const [p] = ok(`gitops:
  manifest_projects:
  - id: g/p
    ref:
      tag: v1.2.0
    reconcile_timeout: 5400s
    dry_run_strategy: server
    prune: no
    prune_timeout: 1.5s
    prune_propagation_policy: background
    inventory_policy: adopt_all
`).projects;
    expect(p).toMatchObject({
      ref: { tag: 'v1.2.0' },
      reconcileTimeoutMs: 5_400_000,
      dryRunStrategy: 'server',
      prune: false,
      pruneTimeoutMs: 1_500,
      prunePropagationPolicy: 'background',
      inventoryPolicy: 'adopt_all',
    });
    expect(ok('gitops:\n  manifest_projects:\n  - ref: {branch: release}\n').projects[0].ref).toEqual({
      branch: 'release',
    });
    expect(ok(`gitops:\n  manifest_projects:\n  - ref: {commit: ${'b'.repeat(40)}}\n`).projects[0].ref).toEqual({
      commit: 'b'.repeat(40),
    });
    // GitLab takes short and uppercase SHAs; the resolved id is lowercase.
    expect(ok('gitops:\n  manifest_projects:\n  - ref: {commit: ABC1234}\n').projects[0].ref).toEqual({
      commit: 'abc1234',
    });
    // "" means the default for GitLab's string enums, and null leaves a key unset.
    expect(
      ok(
        'gitops:\n  manifest_projects:\n  - {dry_run_strategy: "", inventory_policy: "", prune:, reconcile_timeout: ~}\n',
      ).projects[0],
    ).toMatchObject({
      dryRunStrategy: 'none',
      inventoryPolicy: 'must_match',
      prune: true,
      reconcileTimeoutMs: 3_600_000,
    });
  });

  it('treats an empty file, or one with only comments, as a valid config with no projects', () => {
    for (const text of ['', '# nothing yet\n', 'gitops:\n']) {
      expect(ok(text)).toEqual({
        settings: { drift: { mode: 'correct', ignore: [] } },
        projects: [],
        unusedSections: [],
      });
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
    expect(config.settings).toEqual({
      logLevel: 'debug',
      drift: { mode: 'detect', ignore: [{ kind: 'Deployment', paths: ['/spec/replicas'] }] },
    });
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
observability:
  logging:
    grpc_level: warn
`);
    expect(config.unusedSections).toEqual([
      'ci_access',
      'user_access',
      'container_scanning',
      'remote_development',
      'flux',
      'observability.logging.grpc_level',
    ]);
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
        expect.objectContaining({
          code: 'CONFIG_UNKNOWN_KEY',
          file: FILE,
          line: 4,
          message: expect.stringMatching(
            /^\.gitlab\/agents\/agent1\/config\.yaml:4:5: gitops\.manifest_projects\[0\]\.pathz: unknown key.*; did you mean paths\?$/,
          ),
        }),
        expect.objectContaining({
          code: 'CONFIG_UNKNOWN_KEY',
          line: 6,
          message: expect.stringMatching(
            /:6:1: surprise: unknown key.*; the top level has gitops, observability, ci_access/,
          ),
        }),
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
    expect(byLine[4]).toMatch(
      /:4:23: gitops\.manifest_projects\[0\]\.dry_run_strategy: "sometimes" is not one of none, client, server; allowed: none, client, server \(or leave it out, or "", for the default\)/,
    );
    expect(byLine[5]).toMatch(/prune: must be true or false, not "yes please"/);
    expect(byLine[6]).toMatch(
      /reconcile_timeout: "soon" is not a duration GitLab reads; durations are seconds with an s: write 3600s/,
    );
    expect(byLine[7]).toMatch(/inventory_policy: "adopt" is not one of must_match, adopt_if_no_inventory, adopt_all/);
    expect(byLine[10]).toMatch(/ref\.tag: set only one of branch, tag, commit \(branch and tag are both set\)/);
    expect(found.every((p) => p.code === 'CONFIG_INVALID_VALUE')).toBe(true);
  });

  it('refuses gitops.charts and says what to do instead', () => {
    const [p] = problems('gitops:\n  charts:\n  - release_name: x\n');
    expect(p).toMatchObject({ code: 'CONFIG_CHARTS_UNSUPPORTED', line: 2 });
    expect(p.message).toMatch(/helm template/);
    expect(p.message).toMatch(/Flux/);
  });

  it('reports YAML syntax errors with their line; a key given twice keeps its last value, as in GitLab', () => {
    expect(problems('gitops:\n  manifest_projects: [\n')[0]).toMatchObject({
      code: 'CONFIG_YAML_INVALID',
      file: FILE,
      line: 3,
    });
    expect(
      ok('gitops:\n  manifest_projects: [{id: a}]\ngitops:\n  manifest_projects: [{id: b}]\n').projects.map(
        (p) => p.id,
      ),
    ).toEqual(['b']);
  });

  it('reads the first document only, as GitLab; rejects a file that is not a mapping and a project listed twice', () => {
    expect(problems('- a\n- b\n')[0].message).toMatch(
      /must be a mapping of keys, not a list; the file is a mapping of sections/,
    );
    expect(ok('gitops: {}\n---\nnot: [yaml\n').projects).toEqual([]);
    const twice = problems('gitops:\n  manifest_projects:\n  - id: a\n  - id: a\n');
    expect(twice[0]).toMatchObject({
      line: 4,
      message: expect.stringMatching(
        /:4:9: gitops\.manifest_projects\[1\]\.id: project a is already listed as manifest_projects\[0\] \(line 3\); list each project once/,
      ),
    });
    // The config project itself, named twice: once by id, once by leaving id out.
    expect(
      problems('gitops:\n  manifest_projects:\n  - id: group/kubernetes-agent\n  - paths: [{glob: x}]\n')[0].message,
    ).toMatch(/:4:5: gitops\.manifest_projects\[1\]\.id: project group\/kubernetes-agent is already listed/);
  });

  it('merges YAML merge keys and reads YAML 1.1 booleans, as sigs.k8s.io/yaml did for GitLab', () => {
    const config = ok(
      'gitops:\n  manifest_projects:\n  - &base\n    id: group/a\n    prune: off\n  - <<: *base\n    id: group/b\n',
    );
    expect(config.projects.map((p) => [p.id, p.prune])).toEqual([
      ['group/a', false],
      ['group/b', false],
    ]);
  });

  it('says what GitLab accepts: the seconds form of a duration, the allowed values, the key meant', () => {
    const hint = (text: string) => problems(project(text))[0].message;
    expect(hint('reconcile_timeout: 1h')).toMatch(
      /"1h" is not a duration GitLab reads; durations are seconds: write 3600s$/,
    );
    expect(hint('reconcile_timeout: 1h30m')).toMatch(/write 5400s$/);
    expect(hint('prune_timeout: 500ms')).toMatch(/write 0.5s$/);
    expect(hint('prune_timeout: 3600')).toMatch(/write 3600s$/);
    expect(hint('reconcile_timout: 3600s')).toMatch(
      /reconcile_timout: unknown key.*; did you mean reconcile_timeout\?$/,
    );
    expect(hint('default-namespace: a')).toMatch(/did you mean default_namespace\?$/);
    expect(hint('prune_propagation_policy: Orphan')).toMatch(
      /did you mean orphan\? allowed: orphan, background, foreground/,
    );
    expect(hint('prune: "true"')).toMatch(/must be true or false, not "true"; write it without quotes/);
    expect(hint('ref: {tag: 1.0}')).toMatch(
      /ref\.tag: must be a string, not a number \(YAML reads 1 as a number\); quote it: '1'/,
    );
    expect(hint('ref: {}')).toMatch(
      /ref: set exactly one of branch, tag, commit; or leave ref out for the default branch/,
    );
    expect(problems('starboard: {}\n')[0].message).toMatch(
      /starboard was removed from GitLab in 16.0: use container_scanning/,
    );
    expect(problems('ci_access:\n  default-namespace: x\n')[0].message).toMatch(
      /ci_access\.default-namespace: unknown key.*; ci_access has projects, groups/,
    );
    expect(problems('flux: {enabled: false}\n')[0].message).toMatch(/flux\.enabled: unknown key/);
  });

  it('refuses a glob doublestar would find malformed and a glob listed twice, with their lines', () => {
    expect(problems(project('paths: [{glob: "/a[bc"}]'))[0].message).toMatch(
      /:3:20: gitops\.manifest_projects\[0\]\.paths\[0\]\.glob: "\/a\[bc" is not a glob GitLab can match: "\[" is never closed/,
    );
    const twice = problems(project('paths:\n    - glob: /a/*.yaml\n    - glob: a/*.yaml'));
    expect(twice[0].message).toMatch(
      /:5:13: gitops\.manifest_projects\[0\]\.paths\[1\]\.glob: the same glob as paths\[0\] \(line 4\)/,
    );
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

describe('parseAgentConfig: a tenant file is bounded and checked before it reaches Git', () => {
  it.each([
    ['a path that climbs out', '../../etc', /"\.\.\/\.\.\/etc" is not a GitLab project path: segment 1/],
    ['a URL', 'http://169.254.169.254/latest', /is not a GitLab project path: segment 1 may contain only/],
    ['an absolute path', '/etc/passwd', /segment 1 is empty/],
    ['a .git suffix', 'group/app.git', /must not end in '\.git'/],
    ['an absurd length', 'a'.repeat(10_000), /at most 255 characters \(this one has 10000\)/],
  ])('refuses a manifest project id that is %s, naming file:line', (_what, id, reason) => {
    const found = problems(`gitops:\n  manifest_projects:\n  - id: gitops-project\n  - id: '${id}'\n`);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ code: 'CONFIG_INVALID_VALUE', file: FILE, line: 4 });
    expect(found[0].message).toMatch(
      /^\.gitlab\/agents\/agent1\/config\.yaml:4:9: gitops\.manifest_projects\[1\]\.id: /,
    );
    expect(found[0].message).toMatch(reason);
    // The id is echoed cut short, never whole.
    expect(found[0].message.length).toBeLessThan(400);
  });

  it('refuses an id given as "" or as a number; an empty id: is the config project, as in GitLab', () => {
    expect(problems(project("id: ''"))[0].message).toMatch(
      /:3:9: gitops\.manifest_projects\[0\]\.id: must not be empty/,
    );
    expect(problems(project('id: 42'))[0].message).toMatch(/id: must be a string, not a number/);
    expect(ok(project('id: ~')).projects[0].id).toBe('group/kubernetes-agent');
    expect(ok(project('id:')).projects[0].id).toBe('group/kubernetes-agent');
  });

  it('refuses branch and tag names Git would refuse or that read as a path or an option', () => {
    expect(problems(project("ref: {branch: '../../x'}"))[0].message).toMatch(
      /ref\.branch: "\.\.\/\.\.\/x" is not a valid Git ref name: must not contain '\.\.'/,
    );
    expect(problems(project("ref: {tag: '-x'}"))[0].message).toMatch(/ref\.tag: .*must not start with '-'/);
    expect(problems(project("ref: {branch: ''}"))[0].message).toMatch(/ref\.branch: must not be empty/);
    expect(problems(project(`ref: {branch: ${'b'.repeat(300)}}`))[0].message).toMatch(
      /at most 255 characters \(this one has 300\)/,
    );
    expect(ok(project('ref: {branch: feature/x-1.2}')).projects[0].ref).toEqual({ branch: 'feature/x-1.2' });
  });

  it.each([
    ['main', undefined],
    ['feature/a_b-1.2', undefined],
    ['release@v1', undefined],
    ['', 'must not be empty'],
    ['a b', 'must not contain spaces'],
    ['a\tb', 'must not contain spaces'],
    ['a~1', 'must not contain spaces'],
    ['a:b', 'must not contain spaces'],
    ['a\\b', 'must not contain spaces'],
    ['a..b', "'..'"],
    ['a@{1}', "'@{'"],
    ['@', "'@{'"],
    ['-f', "start with '-'"],
    ['/main', "'/'"],
    ['main/', "'/'"],
    ['a//b', "'//'"],
    ['main.', "end in '.'"],
    ['a/.hidden', "start with '.'"],
    ['main.lock', "'.lock'"],
  ])('refNameProblem(%j)', (name, expected) => {
    const problem = refNameProblem(name);
    if (expected === undefined) expect(problem).toBeUndefined();
    else expect(problem).toContain(expected);
  });

  it('refuses a default_namespace that is no Kubernetes namespace name', () => {
    expect(problems(project('default_namespace: Prod'))[0].message).toMatch(
      /default_namespace: "Prod" is not a Kubernetes namespace name/,
    );
    expect(problems(project(`default_namespace: ${'a'.repeat(64)}`))[0].message).toMatch(
      /default_namespace: .* is not a Kubernetes namespace name: at most 63/,
    );
    expect(ok(project("default_namespace: ''")).projects[0].defaultNamespace).toBe('default');
    expect(ok(project('default_namespace: team-a')).projects[0].defaultNamespace).toBe('team-a');
  });

  it('caps manifest projects, paths per project and glob length', () => {
    const many = (n: number, item: (i: number) => string) => Array.from({ length: n }, (_, i) => item(i)).join('');
    const projects = (n: number) => `gitops:\n  manifest_projects:\n${many(n, (i) => `  - id: p${i}\n`)}`;
    expect(ok(projects(CONFIG_LIMITS.manifestProjects)).projects).toHaveLength(100);
    expect(problems(projects(CONFIG_LIMITS.manifestProjects + 1))[0].message).toMatch(
      /:3:3: gitops\.manifest_projects: lists 101 entries; at most 100 are allowed/,
    );
    const paths = (n: number) => project(`id: a\n    paths:\n${many(n, (i) => `    - glob: /d${i}/*.yaml\n`)}`);
    expect(ok(paths(100)).projects[0].paths).toHaveLength(100);
    expect(problems(paths(101))[0].message).toMatch(
      /gitops\.manifest_projects\[0\]\.paths: lists 101 entries; at most 100 are allowed/,
    );
    expect(problems(project(`paths: [{glob: '/${'x'.repeat(1024)}'}]`))[0].message).toMatch(
      /paths\[0\]\.glob: must be at most 1024 characters/,
    );
  });

  it('caps drift rules, JSON pointers per rule, and the length of selectors and pointers', () => {
    const rules = (n: number) =>
      `gitops:\n  drift:\n    ignore:\n${Array.from({ length: n }, (_, i) => `    - {kind: K${i}, paths: [/spec]}\n`).join('')}`;
    expect(ok(rules(100)).settings.drift.ignore).toHaveLength(100);
    expect(problems(rules(101))[0].message).toMatch(
      /:4:5: gitops\.drift\.ignore: lists 101 entries; at most 100 are allowed/,
    );
    const pointers = Array.from({ length: 101 }, (_, i) => `/p${i}`).join(', ');
    expect(problems(`gitops:\n  drift:\n    ignore:\n    - paths: [${pointers}]\n`)[0].message).toMatch(
      /ignore\[0\]\.paths: lists 101 entries; at most 100/,
    );
    expect(problems(`gitops:\n  drift:\n    ignore:\n    - paths: [/${'x'.repeat(1024)}]\n`)[0].message).toMatch(
      /paths\[0\]: must be at most 1024 characters/,
    );
    expect(
      problems(`gitops:\n  drift:\n    ignore:\n    - {name: ${'n'.repeat(254)}, paths: [/x]}\n`)[0].message,
    ).toMatch(/ignore\[0\]\.name: must be at most 253 characters/);
    expect(
      problems(`gitops:\n  drift:\n    ignore:\n    - {namespace: ${'n'.repeat(64)}, paths: [/x]}\n`)[0].message,
    ).toMatch(/ignore\[0\]\.namespace: must be at most 63 characters/);
  });

  it('refuses a file over 128 KiB before parsing it, with the size and the limit', () => {
    const limit = CONFIG_LIMITS.fileBytes;
    const padded = (bytes: number) => `gitops: {}\n#${'x'.repeat(bytes - 'gitops: {}\n#\n'.length)}\n`;
    expect(Buffer.byteLength(padded(limit))).toBe(limit);
    expect(parse(padded(limit)).ok).toBe(true);
    const [p] = problems(padded(limit + 1));
    expect(p).toEqual({
      code: 'CONFIG_TOO_LARGE',
      file: FILE,
      message: expect.stringContaining(
        `${FILE}: 128.0 KiB (131073 bytes) is over the 128 KiB limit for an agent configuration file`,
      ),
    });
    // Counted in UTF-8 bytes, not characters: 70,000 two-byte characters are 140,000 bytes.
    expect(problems(`# ${'é'.repeat(70_000)}\n`)[0]).toMatchObject({
      code: 'CONFIG_TOO_LARGE',
      message: expect.stringContaining('(140003 bytes)'),
    });
    // Not parsed: a 4.7 MB file of drift rules comes back at once with one problem, not 56,000.
    const huge = `gitops:\n  drift:\n    ignore:\n${'    - {kind: Deployment, paths: [/spec/replicas]}\n'.repeat(56_000)}`;
    const t0 = performance.now();
    expect(problems(huge)).toEqual([expect.objectContaining({ code: 'CONFIG_TOO_LARGE' })]);
    expect(performance.now() - t0).toBeLessThan(200);
  });

  it('refuses YAML aliases that expand past the bound (a "billion laughs") without throwing', () => {
    const laughs = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++)
      laughs.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10)
          .fill(`*${String.fromCharCode(96 + i)}`)
          .join(', ')}]`,
      );
    const text = `${laughs.join('\n')}\ngitops:\n  drift:\n    ignore:\n    - paths: *i\n`;
    const [p] = problems(text);
    expect(p).toMatchObject({
      code: 'CONFIG_YAML_INVALID',
      message: expect.stringContaining('YAML aliases expand to more than 100 nodes'),
    });
    // A few aliases, as people use them to share pointers between rules, are fine.
    const shared =
      'gitops:\n  drift:\n    ignore:\n    - {kind: A, paths: &p [/spec/replicas, /metadata/labels]}\n    - {kind: B, paths: *p}\n';
    expect(ok(shared).settings.drift.ignore[1].paths).toEqual(['/spec/replicas', '/metadata/labels']);
  });

  it('lists at most 50 problems for a file full of mistakes', () => {
    const text = `gitops:\n  manifest_projects:\n${Array.from({ length: 100 }, (_, i) => `  - {id: p${i}, prune: maybe}\n`).join('')}`;
    expect(problems(text)).toHaveLength(50);
  });

  it('says on which line each manifest project is listed', () => {
    const r = parse(
      'gitops:\n  manifest_projects:\n  - id: a\n  - paths: [{glob: x}]\n  -\n    ref: {branch: main}\n    id: b\n',
    );
    expect(r).toMatchObject({ ok: true, projectLines: [3, 4, 7] });
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
    const r = await loadAgentConfig(
      at({ '.gitlab/agents/agent1/config.yaml': 'gitops:\n  manifest_projects:\n  - paths: [{glob: /x/*.yaml}]\n' }),
      opts,
    );
    expect(r).toMatchObject({
      ok: true,
      commit: COMMIT,
      config: { projects: [{ id: 'group/agents', paths: [{ glob: '/x/*.yaml' }] }] },
    });
  });

  it('treats a missing file as a valid config with no projects', async () => {
    expect(await loadAgentConfig(at({}), opts)).toMatchObject({ ok: true, config: { projects: [] } });
  });

  it('turns a read failure into a problem naming the file', async () => {
    const r = await loadAgentConfig(at({}, new Error('too large')), opts);
    expect(r).toMatchObject({
      ok: false,
      problems: [{ code: 'CONFIG_UNREADABLE', file: '.gitlab/agents/agent1/config.yaml' }],
    });
  });
});
