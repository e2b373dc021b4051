/**
 * `gitops-server config check [FILE...]`: GitLab's verdict on agent configuration files, offline,
 * through the same parseAgentConfig the server uses (so a file passes here exactly when the server
 * takes it). With `--project GROUP/NAME --agent NAME` it reads the agent's config.yaml from the
 * config project's default branch through the server's Git settings (the `serve` flags and their
 * GITOPS_SERVER_* variables) and loadAgentConfig, the server's own reader. Exit status: 0 when
 * every file is valid, 1 when one is not (or cannot be read from Git), 2 for a usage error.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command, Option, type CommanderError } from 'commander';
import { errorMessage, UserError } from '../../common/errors.js';
import { inForceHelp } from '../../common/help-defaults.js';
import {
  agentConfigPath,
  issueText,
  loadAgentConfig,
  parseAgentConfig,
  type ConfigIssue,
  type ParsedAgentConfig,
} from '../config.js';
import { createGitSource } from '../git/source.js';
import { resolveGitOptions, type RawServeFlags } from '../options.js';
import { gitFlagOptions } from './serve.js';

/** What `-o json` prints for one file. */
export interface CheckedFile {
  file: string;
  ok: boolean;
  problems: { code: string; message: string; line?: number; column?: number; key?: string; hint?: string }[];
  config?: Record<string, unknown>;
  /** Sections GitLab defines that have no effect here (valid files). */
  unused?: string[];
}

/** Stands for the config project when files are checked offline (a manifest project without `id`). */
export const OFFLINE_CONFIG_PROJECT = 'the-config-project';

interface CheckFlags extends Pick<RawServeFlags, 'gitBaseUrl' | 'gitTokenFile' | 'gitRoot'> {
  output: 'text' | 'json';
  project?: string;
  agent?: string;
  configProject?: string;
}

const USAGE = 2;

export function configCommand(): Command {
  const config = new Command('config')
    .description('Work with agent configuration files (.gitlab/agents/<name>/config.yaml).')
    .configureHelp(inForceHelp());
  const check = config
    .command('check')
    .description(
      'Check agent configuration files as GitLab (v16.5) and this server read them: every key of every section, ' +
        'with file:line:column, the key, what is wrong and what GitLab accepts instead. Offline: no server, no Git. ' +
        'Exit status 0 when every file is valid, 1 when one is not, 2 for a usage error.',
    )
    .argument('[file...]', 'config.yaml files to check (e.g. .gitlab/agents/agent1/config.yaml)')
    .addOption(
      new Option('-o, --output <format>', 'text for people, json for scripts')
        .choices(['text', 'json'])
        .default('text'),
    )
    .option(
      '--config-project <group/name>',
      `the config project, which a manifest project without id: stands for (offline default: ${OFFLINE_CONFIG_PROJECT})`,
    )
    .option(
      '--project <group/name>',
      "instead of files: check the agent's config.yaml in this config project, on its default branch, read with the Git flags below",
    )
    .option('--agent <name>', 'with --project: the agent whose .gitlab/agents/<name>/config.yaml is checked');
  for (const option of gitFlagOptions()) check.addOption(option);
  check
    .addHelpText(
      'after',
      `
Examples:
  # before you push: check the file in your checkout
  gitops-server config check .gitlab/agents/agent1/config.yaml
  # all agents of a config project checkout, for CI (exit status 1 when one is invalid)
  gitops-server config check .gitlab/agents/*/config.yaml -o json
  # what the server sees: the file on the config project's default branch, through its Git settings
  gitops-server config check --project group/kubernetes-agent --agent agent1 --git-base-url https://gitlab.example.com --git-token-file token

Output (text): one line per problem, then a hint line, e.g.
  .gitlab/agents/agent1/config.yaml:7:26: gitops.manifest_projects[0].reconcile_timeout: "1h" is not a duration GitLab reads
      hint: durations are seconds: write 3600s
Output (json): [{"file", "ok", "problems": [{"code", "message", "line", "column", "key", "hint"}],
  "config": {the file with every default filled in}, "unused": [sections GitLab defines that have no effect here]}]
`,
    )
    // --help is not an error; anything else commander refuses (its message is printed already) is a usage error.
    .exitOverride((err: CommanderError) => process.exit(err.exitCode === 0 ? 0 : USAGE))
    .action(async (files: string[], flags: CheckFlags) => {
      try {
        const checked = await runCheck(files, flags);
        process.stdout.write(flags.output === 'json' ? `${JSON.stringify(checked, null, 2)}\n` : formatText(checked));
        process.exitCode = checked.every((c) => c.ok) ? 0 : 1;
      } catch (err) {
        process.stderr.write(`error: ${errorMessage(err)}\n`);
        process.exitCode = err instanceof UserError && err.code === 'INVALID_OPTIONS' ? USAGE : 1;
      }
    });
  return config;
}

function usage(message: string): UserError {
  return new UserError('INVALID_OPTIONS', `config check: ${message} (see gitops-server config check --help)`);
}

async function runCheck(files: string[], flags: CheckFlags): Promise<CheckedFile[]> {
  if (flags.project !== undefined || flags.agent !== undefined) {
    if (files.length) throw usage('give files or --project/--agent, not both');
    if (!flags.project || !flags.agent) throw usage('--project and --agent go together');
    return [await checkInGit(flags.project, flags.agent, flags)];
  }
  if (files.length === 0) throw usage('name at least one file, or --project GROUP/NAME --agent NAME');
  const configProject = flags.configProject ?? OFFLINE_CONFIG_PROJECT;
  const out: CheckedFile[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw usage(`cannot read ${file}: ${errorMessage(err)}`);
    }
    out.push(toChecked(file, parseAgentConfig(text, { file, configProject, commit: '' })));
  }
  return out;
}

/** Reads the file as the server would: its Git settings, its reader (loadAgentConfig), the default branch. */
async function checkInGit(project: string, agent: string, flags: CheckFlags): Promise<CheckedFile> {
  const problems: string[] = [];
  const git = resolveGitOptions(flags, (p) => problems.push(p));
  if (problems.length) throw usage(problems.join('; '));
  const cacheDir = git.mode === 'http' ? await mkdtemp(path.join(tmpdir(), 'gitops-config-check-')) : undefined;
  const source = await createGitSource(
    git.mode === 'http' ? { baseUrl: git.baseUrl, token: git.token, cacheDir } : { root: git.root },
  );
  try {
    let stop: (() => void) | undefined;
    const commit = await new Promise<string>((resolve, reject) => {
      stop = source.watch(
        project,
        {},
        (e) => resolve(e.commit),
        (e) => reject(new Error(e.problem.message)),
      );
    }).finally(() => stop?.());
    return toChecked(
      agentConfigPath(agent),
      await loadAgentConfig(source, { configProject: project, agentName: agent, commit }),
    );
  } finally {
    await source.close();
    if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
  }
}

function toChecked(file: string, result: ParsedAgentConfig): CheckedFile {
  if (result.ok) {
    const unused = result.config.unusedSections;
    return {
      file,
      ok: true,
      problems: [],
      ...(result.resolved ? { config: result.resolved } : {}),
      ...(unused.length ? { unused } : {}),
    };
  }
  // A problem found before the file was parsed (Git, size) has no structured issue: its message is the whole story.
  const issues: readonly ConfigIssue[] =
    result.issues ??
    result.problems.map((p) => ({ code: p.code, message: p.message, ...(p.line ? { line: p.line } : {}) }));
  return { file, ok: false, problems: issues.map((i) => ({ code: i.code, message: i.message, ...pick(i) })) };
}

function pick(i: ConfigIssue): Partial<ConfigIssue> {
  const out: Partial<ConfigIssue> = {};
  if (i.line !== undefined) out.line = i.line;
  if (i.column !== undefined) out.column = i.column;
  if (i.key !== undefined) out.key = i.key;
  if (i.hint !== undefined) out.hint = i.hint;
  return out;
}

function formatText(checked: CheckedFile[]): string {
  const lines: string[] = [];
  for (const c of checked) {
    if (c.ok) {
      lines.push(
        `${c.file}: ok${c.unused?.length ? ` (valid for GitLab, no effect here: ${c.unused.join(', ')})` : ''}`,
      );
      continue;
    }
    for (const p of c.problems) {
      lines.push(issueText(c.file, p, false));
      if (p.hint) lines.push(`    hint: ${p.hint}`);
    }
  }
  const bad = checked.filter((c) => !c.ok).length;
  lines.push(
    bad
      ? `${bad} of ${checked.length} file${checked.length > 1 ? 's' : ''} invalid`
      : `${checked.length} file${checked.length > 1 ? 's' : ''} valid`,
  );
  return `${lines.join('\n')}\n`;
}
