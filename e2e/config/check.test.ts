/**
 * `gitops-server config check` (issue 16): the built CLI (dist/bin) on real files, its text and
 * JSON output and exit codes, and the server reporting the very same problems for the same file
 * in `agent list` (a real `serve` process reading the file from a real Git server), and
 * `config check --project --agent` reading that file through the same Git settings.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { repoRoot } from '../harness/controlplane.js';
import { DEFAULT_TENANT_CONFIG, TENANT_CONFIG_PROJECT, useTenantServer } from '../harness/server-process.js';
import { waitFor } from '../harness/wait.js';

const BIN = path.join(repoRoot(), 'dist', 'bin', 'gitops-server.js');

/** Five mistakes GitLab refuses, one per kind, each on its own line. */
const BAD_CONFIG = `gitops:
  manifest_projects:
  - id: gitops-project
    reconcile_timeout: 1h
    dry_run_strategy: Server
    ref: {}
  - id: gitops-project
ci_access:
  default-namespace: ci
starboard: {}
`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function check(args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, 'config', 'check', ...args],
      { cwd, env: { ...process.env, GITOPS_SERVER_GIT_BASE_URL: '', GITOPS_SERVER_GIT_ROOT: '' } },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : 1
          : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

interface JsonFile {
  file: string;
  ok: boolean;
  problems: { code: string; message: string; line?: number; column?: number; key?: string; hint?: string }[];
  config?: { gitops: { manifest_projects: Record<string, unknown>[] } };
  unused?: string[];
}

/** A problem of `-o json` as the server words it: `file:line:column: key: message; hint`. */
const asServerMessage = (file: string, p: JsonFile['problems'][number]): string =>
  `${file}:${p.line}:${p.column}: ${p.key}: ${p.message}${p.hint ? `; ${p.hint}` : ''}`;

const FILE = '.gitlab/agents/bad/config.yaml';

describe('gitops-server config check: offline', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'config-check-'));
    await mkdir(path.join(dir, '.gitlab/agents/bad'), { recursive: true });
    await mkdir(path.join(dir, '.gitlab/agents/good'), { recursive: true });
    await writeFile(path.join(dir, FILE), BAD_CONFIG);
    await writeFile(path.join(dir, '.gitlab/agents/good/config.yaml'), DEFAULT_TENANT_CONFIG);
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('prints file:line:column: key: message with a hint per problem, and exits 1', async () => {
    const r = await check([FILE, '.gitlab/agents/good/config.yaml'], dir);
    expect(r.code).toBe(1);
    expect(r.stdout.split('\n')).toEqual([
      `${FILE}:4:24: gitops.manifest_projects[0].reconcile_timeout: "1h" is not a duration GitLab reads`,
      '    hint: durations are seconds: write 3600s',
      `${FILE}:5:23: gitops.manifest_projects[0].dry_run_strategy: "Server" is not one of none, client, server`,
      '    hint: did you mean server? allowed: none, client, server (or leave it out, or "", for the default)',
      `${FILE}:6:10: gitops.manifest_projects[0].ref: set exactly one of branch, tag, commit`,
      '    hint: or leave ref out for the default branch',
      `${FILE}:9:3: ci_access.default-namespace: unknown key: GitLab's agent configuration defines no "default-namespace" here`,
      '    hint: ci_access has projects, groups',
      `${FILE}:10:1: starboard: starboard was removed from GitLab in 16.0: use container_scanning`,
      '.gitlab/agents/good/config.yaml: ok',
      '1 of 2 files invalid',
      '',
    ]);
  });

  it('prints JSON with the resolved config of a valid file, and exits 0 when all are valid', async () => {
    const r = await check(['-o', 'json', '.gitlab/agents/good/config.yaml'], dir);
    expect(r.code).toBe(0);
    const [good] = JSON.parse(r.stdout) as JsonFile[];
    expect(good).toMatchObject({ file: '.gitlab/agents/good/config.yaml', ok: true, problems: [] });
    expect(good.unused).toBeUndefined();
    expect(good.config?.gitops.manifest_projects).toEqual([
      {
        id: 'gitops-project',
        default_namespace: 'default',
        paths: [{ glob: '/**/*.yaml' }],
        reconcile_timeout: '3600s',
        dry_run_strategy: 'none',
        prune: true,
        prune_timeout: '3600s',
        prune_propagation_policy: 'foreground',
        inventory_policy: 'must_match',
      },
    ]);
  });

  it('finds the duplicate id once the first problems are fixed, with its line', async () => {
    const fixed = BAD_CONFIG.replace('1h', '3600s')
      .replace('Server', 'server')
      .replace('ref: {}', 'ref: {branch: main}')
      .replace(/ci_access:\n.*\nstarboard: \{\}\n/, '');
    await writeFile(path.join(dir, 'fixed.yaml'), fixed);
    const r = await check(['-o', 'json', 'fixed.yaml'], dir);
    expect(r.code).toBe(1);
    expect((JSON.parse(r.stdout) as JsonFile[])[0].problems).toEqual([
      {
        code: 'CONFIG_INVALID_VALUE',
        key: 'gitops.manifest_projects[1].id',
        line: 7,
        column: 9,
        message: 'project gitops-project is already listed as manifest_projects[0] (line 3)',
        hint: 'list each project once (GitLab refuses a duplicate id); put all its globs under one entry',
      },
    ]);
  });

  it.each([
    [[], /name at least one file/],
    [['--bogus'], /unknown option '--bogus'/],
    [['-o', 'yaml', 'x.yaml'], /Allowed choices are text, json/],
    [['missing.yaml'], /cannot read missing\.yaml/],
    [['--project', 'g/p'], /--project and --agent go together/],
    [['--project', 'g/p', '--agent', 'a', 'x.yaml'], /give files or --project\/--agent, not both/],
    [['--project', 'g/p', '--agent', 'a'], /Git: give --git-base-url URL/],
  ])('exits 2 for a usage error: %j', async (args, message) => {
    const r = await check(args, dir);
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(message)]);
  });

  it('explains itself in --help, with examples', async () => {
    const r = await check(['--help'], dir);
    expect(r.code).toBe(0);
    // commander wraps the description to the terminal width.
    expect(r.stdout.replace(/\s+/g, ' ')).toMatch(
      /Exit status 0 when every file is valid, 1 when one is not, 2 for a usage error/,
    );
    expect(r.stdout).toMatch(/gitops-server config check \.gitlab\/agents\/agent1\/config\.yaml/);
    expect(r.stdout).toMatch(/--git-base-url <url>/);
  });
});

describe('gitops-server config check: the server says the same', () => {
  const tenant = useTenantServer({ agents: [{ name: 'good' }, { name: 'bad', config: BAD_CONFIG }] });
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'config-check-'));
    await mkdir(path.join(dir, '.gitlab/agents/bad'), { recursive: true });
    await writeFile(path.join(dir, FILE), BAD_CONFIG);
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('shows in agent list exactly the problems config check prints for the file', async () => {
    const ts = tenant();
    const offline = JSON.parse(
      (await check(['-o', 'json', '--config-project', TENANT_CONFIG_PROJECT, FILE], dir)).stdout,
    ) as JsonFile[];
    const expected = offline[0].problems.map((p) => asServerMessage(FILE, p));
    expect(expected).toHaveLength(5);
    const listed = await waitFor(
      async () => (await ts.agentRow('bad')).status?.configProblems,
      20_000,
      'config problems of agent bad',
    );
    expect(listed.map((p) => p.message)).toEqual(expected);
    expect(listed.map((p) => [p.code, p.line])).toEqual(offline[0].problems.map((p) => [p.code, p.line]));
    expect((await ts.agentRow('good')).status?.configProblems).toBeUndefined();
  });

  it('reads the file from the config project through the Git flags with --project --agent', async () => {
    const ts = tenant();
    const r = await check(
      ['--project', TENANT_CONFIG_PROJECT, '--agent', 'bad', '--git-base-url', ts.gitServer.url, '-o', 'json'],
      dir,
    );
    expect(r.code).toBe(1);
    const [inGit] = JSON.parse(r.stdout) as JsonFile[];
    expect(inGit.file).toBe(FILE);
    const listed = (await ts.agentRow('bad')).status?.configProblems ?? [];
    expect(inGit.problems.map((p) => asServerMessage(FILE, p))).toEqual(listed.map((p) => p.message));
    const good = await check(
      ['--project', TENANT_CONFIG_PROJECT, '--agent', 'good', '--git-base-url', ts.gitServer.url],
      dir,
    );
    expect([good.code, good.stdout]).toEqual([0, '.gitlab/agents/good/config.yaml: ok\n1 file valid\n']);
  });
});
