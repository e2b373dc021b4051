/**
 * `gitops-server agent create|list|revoke|allow|disallow`: manage the agent registry in a state
 * dir. These run as their own processes beside a running server, which notices changes within a
 * second (crash-safe writes of agents.json under its lock; see state-files.ts).
 */
import { Command, Option } from 'commander';
import { UserError } from '../../common/errors.js';
import { inForceHelp } from '../../common/help-defaults.js';
import type { ProblemReport } from '../../protocol/messages.js';
import { DEFAULT_STATE_DIR } from '../options.js';
import {
  createAgent,
  listAgentsReport,
  revokeAgent,
  updateAllowProjects,
  type AgentListRow,
  type HealthRecord,
} from '../registry.js';

/** Collects a repeatable option's values. */
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

const ALLOW_HELP =
  "a manifest project the agent may read besides its config project's group: a path group/name, or a group prefix ending in / (group/ and its subgroups); repeatable";

function stateDirOption(): Option {
  return new Option('--state-dir <dir>', 'state directory of the server')
    .env('GITOPS_SERVER_STATE_DIR')
    .default(DEFAULT_STATE_DIR);
}

export function agentCommand(): Command {
  const agent = new Command('agent')
    .description('Create, list, revoke agents and change the projects they may read (works beside a running server).')
    // Inherited by every subcommand: --state-dir shows GITOPS_SERVER_STATE_DIR's value when set.
    .configureHelp(inForceHelp());

  agent
    .command('create')
    .description(
      'Register an agent and print its token on stdout, once. Store it in a Kubernetes Secret; it cannot be shown again.',
    )
    .argument('<name>', 'agent name, as in .gitlab/agents/<name>/config.yaml')
    .requiredOption(
      '--config-project <id>',
      'project holding .gitlab/agents/<name>/config.yaml (e.g. group/kubernetes-agent); a GitLab project path',
    )
    .option('--allow-project <path-or-group/>', ALLOW_HELP, collect)
    .addOption(stateDirOption())
    .addHelpText(
      'after',
      '\nExample:\n  gitops-server agent create agent1 --config-project group/kubernetes-agent > agent1.token\n  kubectl -n gitops-agent create secret generic gitops-agent-token --from-file=token=agent1.token\n' +
        '  gitops-server agent create agent2 --config-project tenant-a/agents --allow-project shared/base-manifests --allow-project platform/ > agent2.token\n',
    )
    .action(
      guarded(async (name: string, opts: { configProject: string; allowProject?: string[]; stateDir: string }) => {
        const { record, token } = await createAgent(opts.stateDir, name, opts.configProject, undefined, {
          allowProjects: opts.allowProject ?? [],
        });
        process.stdout.write(token + '\n');
        process.stderr.write(`agent ${record.name} created (id ${record.id}); the token above is shown only once\n`);
      }),
    );

  agent
    .command('list')
    .description(
      'Show agents: config project, allowed projects, connected, last seen, applied commit and health per manifest project, last error (-o json: the full health, with the objects not current). Records of the state dir that fail validation are skipped and reported on stderr as warnings (file:line and why).',
    )
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .option('--all', 'include revoked agents')
    .addOption(stateDirOption())
    .action(
      guarded(async (opts: { output: 'table' | 'json'; stateDir: string; all?: boolean }) => {
        const report = await listAgentsReport(opts.stateDir);
        // On stderr, so `-o json` stays one document for scripts.
        for (const warning of report.warnings) process.stderr.write(`warning: ${warning}\n`);
        const rows = report.rows.filter((r) => opts.all || !r.revokedAt);
        if (opts.output === 'json') {
          process.stdout.write(
            JSON.stringify(
              rows.map(({ publicKey: _omit, ...r }) => r),
              null,
              2,
            ) + '\n',
          );
          return;
        }
        process.stdout.write(formatTable(rows));
      }),
    );

  agent
    .command('revoke')
    .description('Revoke an agent: its live sessions close within a second and its JWTs are refused.')
    .argument('<name>', 'agent name')
    .addOption(stateDirOption())
    .action(
      guarded(async (name: string, opts: { stateDir: string }) => {
        const record = await revokeAgent(opts.stateDir, name);
        process.stderr.write(`agent ${record.name} revoked\n`);
      }),
    );

  for (const verb of ['allow', 'disallow'] as const) {
    agent
      .command(verb)
      .description(
        verb === 'allow'
          ? "Let an agent read more manifest projects (besides its config project's group); a running server applies it within a second."
          : 'Take back projects given with allow or create --allow-project; a running server stops serving them within a second.',
      )
      .argument('<name>', 'agent name')
      .requiredOption(
        '--project <path-or-group/>',
        verb === 'allow' ? ALLOW_HELP : "an entry of the agent's allowed projects, exactly as listed; repeatable",
        collect,
      )
      .addOption(stateDirOption())
      .addHelpText(
        'after',
        `\nExample:\n  gitops-server agent ${verb} agent1 --project tenant-b/secret-manifests --project shared/\n`,
      )
      .action(
        guarded(async (name: string, opts: { project: string[]; stateDir: string }) => {
          const record = await updateAllowProjects(
            opts.stateDir,
            name,
            verb === 'allow' ? { allow: opts.project } : { disallow: opts.project },
          );
          process.stderr.write(
            `agent ${record.name}: allowed projects ${record.allowProjects?.length ? record.allowProjects.join(', ') : 'none'} (besides its config project's group)\n`,
          );
        }),
      );
  }
  return agent;
}

/** Plain columns for people; `-o json` is for scripts. */
export function formatTable(rows: AgentListRow[]): string {
  const header = ['NAME', 'CONFIG PROJECT', 'ALLOWED', 'CONNECTED', 'LAST SEEN', 'APPLIED', 'HEALTH', 'LAST ERROR'];
  const lines = rows.map((r) => {
    const s = r.status;
    const applied =
      Object.entries(s?.applied ?? {})
        .map(([p, a]) => `${p}@${a.commit.slice(0, 8)}${a.result === 'applied' ? '' : `(${a.result})`}`)
        .join(',') || '-';
    return [
      r.revokedAt ? `${r.name} (revoked)` : r.name,
      r.configProject,
      r.allowProjects?.length ? r.allowProjects.join(',') : '-',
      s?.connected ? `yes (${s.sessions})` : 'no',
      s?.lastSeen ?? '-',
      applied,
      healthColumn(r),
      lastError(r) ?? '-',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  return (
    [header, ...lines]
      .map((cols) => cols.map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i]))).join('  '))
      .join('\n') + '\n'
  );
}

/**
 * Health per applied project: `healthy`, `degraded 1/12` (failed of all), `progressing 3/12` or
 * `timed_out 3/12` (not current of all); `-` where the agent reported none (a version-1 agent,
 * or a commit whose health has not come yet). Project names only when the agent has several.
 */
function healthColumn(row: AgentListRow): string {
  const health = row.status?.health ?? {};
  const projects = [...new Set([...Object.keys(row.status?.applied ?? {}), ...Object.keys(health)])];
  if (projects.length === 0) return '-';
  const words = projects.map((p) => (Object.hasOwn(health, p) ? healthWord(health[p]) : '-'));
  if (projects.length === 1) return words[0];
  return projects.map((p, i) => `${p}:${words[i]}`).join(',');
}

function healthWord(h: HealthRecord): string {
  switch (h.result) {
    case 'healthy':
      return 'healthy';
    case 'degraded':
      return `degraded ${h.counts.failed ?? 0}/${h.total}`;
    default:
      return `${h.result} ${h.notCurrent}/${h.total}`;
  }
}

/** The problem a person should see first: config, then Git, then the newest failed apply. */
function lastError(row: AgentListRow): string | undefined {
  const s = row.status;
  const first = (problems: ProblemReport[] | undefined): string | undefined =>
    problems?.length ? problems[0].message + (problems.length > 1 ? ` (+${problems.length - 1} more)` : '') : undefined;
  const applyErrors = Object.entries(s?.projectErrors ?? {}).sort(([, a], [, b]) =>
    a.at < b.at ? 1 : a.at > b.at ? -1 : 0,
  );
  const newest = applyErrors[0];
  const apply = newest ? first(newest[1].problems) : undefined;
  return (
    first(s?.configProblems) ??
    first(Object.values(s?.sourceProblems ?? {})) ??
    (apply && newest
      ? `${newest[0]}: ${apply}${applyErrors.length > 1 ? ` (${applyErrors.length} projects failing)` : ''}`
      : undefined)
  );
}

/**
 * Wraps a command action so a failure prints one line (no stack trace) and sets the exit code:
 * 2 for a UserError (the input must change), 1 otherwise.
 */
export function guarded<A extends unknown[]>(action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (err) {
      process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = err instanceof UserError ? 2 : 1;
    }
  };
}
