/**
 * `gitops-server agent create|list|revoke`: manage the agent registry in a state dir. These run
 * as their own processes beside a running server, which notices changes within a second.
 */
import { Command, Option } from 'commander';
import { UserError } from '../../common/errors.js';
import type { ProblemReport } from '../../protocol/messages.js';
import { DEFAULT_STATE_DIR } from '../options.js';
import { createAgent, listAgents, revokeAgent, type AgentListRow } from '../registry.js';

function stateDirOption(): Option {
  return new Option('--state-dir <dir>', 'state directory of the server').env('GITOPS_SERVER_STATE_DIR').default(DEFAULT_STATE_DIR);
}

export function agentCommand(): Command {
  const agent = new Command('agent').description('Create, list and revoke agents (works beside a running server).');

  agent
    .command('create')
    .description('Register an agent and print its token on stdout, once. Store it in a Kubernetes Secret; it cannot be shown again.')
    .argument('<name>', 'agent name, as in .gitlab/agents/<name>/config.yaml')
    .requiredOption('--config-project <id>', 'project holding .gitlab/agents/<name>/config.yaml (e.g. group/kubernetes-agent)')
    .addOption(stateDirOption())
    .addHelpText('after', '\nExample:\n  gitops-server agent create agent1 --config-project group/kubernetes-agent > agent1.token\n  kubectl -n gitops-agent create secret generic gitops-agent-token --from-file=token=agent1.token\n')
    .action(guarded(async (name: string, opts: { configProject: string; stateDir: string }) => {
      const { record, token } = await createAgent(opts.stateDir, name, opts.configProject);
      process.stdout.write(token + '\n');
      process.stderr.write(`agent ${record.name} created (id ${record.id}); the token above is shown only once\n`);
    }));

  agent
    .command('list')
    .description('Show agents: config project, connected, last seen, applied commit per manifest project, last error.')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .option('--all', 'include revoked agents')
    .addOption(stateDirOption())
    .action(guarded(async (opts: { output: 'table' | 'json'; stateDir: string; all?: boolean }) => {
      const rows = (await listAgents(opts.stateDir)).filter((r) => opts.all || !r.revokedAt);
      if (opts.output === 'json') {
        process.stdout.write(JSON.stringify(rows.map(({ publicKey: _omit, ...r }) => r), null, 2) + '\n');
        return;
      }
      process.stdout.write(formatTable(rows));
    }));

  agent
    .command('revoke')
    .description('Revoke an agent: its live sessions close within a second and its JWTs are refused.')
    .argument('<name>', 'agent name')
    .addOption(stateDirOption())
    .action(guarded(async (name: string, opts: { stateDir: string }) => {
      const record = await revokeAgent(opts.stateDir, name);
      process.stderr.write(`agent ${record.name} revoked\n`);
    }));
  return agent;
}

/** Plain columns for people; `-o json` is for scripts. */
export function formatTable(rows: AgentListRow[]): string {
  const header = ['NAME', 'CONFIG PROJECT', 'CONNECTED', 'LAST SEEN', 'APPLIED', 'LAST ERROR'];
  const lines = rows.map((r) => {
    const s = r.status;
    const applied = Object.entries(s?.applied ?? {}).map(([p, a]) => `${p}@${a.commit.slice(0, 8)}${a.result === 'applied' ? '' : `(${a.result})`}`).join(',') || '-';
    return [
      r.revokedAt ? `${r.name} (revoked)` : r.name,
      r.configProject,
      s?.connected ? `yes (${s.sessions})` : 'no',
      s?.lastSeen ?? '-',
      applied,
      lastError(r) ?? '-',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  return [header, ...lines].map((cols) => cols.map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n') + '\n';
}

/** The problem a person should see first: config, then Git, then the newest failed apply. */
function lastError(row: AgentListRow): string | undefined {
  const s = row.status;
  const first = (problems: ProblemReport[] | undefined): string | undefined => (problems?.length ? problems[0].message + (problems.length > 1 ? ` (+${problems.length - 1} more)` : '') : undefined);
  const applyErrors = Object.entries(s?.projectErrors ?? {}).sort(([, a], [, b]) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
  const newest = applyErrors[0];
  const apply = newest ? first(newest[1].problems) : undefined;
  return first(s?.configProblems) ?? first(Object.values(s?.sourceProblems ?? {})) ?? (apply && newest ? `${newest[0]}: ${apply}${applyErrors.length > 1 ? ` (${applyErrors.length} projects failing)` : ''}` : undefined);
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
