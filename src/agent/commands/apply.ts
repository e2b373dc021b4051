/**
 * `gitops-agent apply -f DIR|FILE`: one sync of a directory, as the agent does for a commit, from
 * a terminal. Prints `Kind/namespace/name action` per object (or the change set as JSON with
 * `-o json`) and exits 1 when any object failed or the input was rejected. With `--wait` it then
 * follows the objects' health as the agent does after a commit, up to `--timeout`, prints a line
 * per object not current and the result, and exits by the result (health-output.ts' codes).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { createLogger } from '../../common/logger.js';
import { errorMessage } from '../../common/errors.js';
import { parseDuration } from '../../common/duration.js';
import { openEngine, type OwnedEngine } from './engine-parts.js';
import { applyOutput } from '../reconcile/report.js';
import { healthLine, healthSummary, notCurrent, WAIT_EXIT_CODES } from '../health-output.js';
import { addCommonOptions, loadCredentials, unitFromFlags, type CommonFlags } from './manifest-input.js';

interface ApplyFlags extends CommonFlags {
  dryRun?: 'server' | 'none';
  output: 'text' | 'json';
  validate: 'server' | 'none';
  wait?: boolean;
  /** Milliseconds (parsed by commander). */
  timeout: number;
}

/** The one-shot CLI has no config.yaml: its reconcile_timeout is this. */
export const DEFAULT_WAIT_TIMEOUT = '5m';

function timeoutArg(value: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError(errorMessage(err));
  }
}

export function applyCommand(): Command {
  const cmd = new Command('apply')
    .summary('apply a directory of manifests to the cluster once')
    .description(
      'Applies every object in the given files or directories, the way the agent applies a commit: creates what is missing, ' +
        'JSON-patches what differs from the files (only fields the files specify), and leaves unchanged objects alone ' +
        '(no write request at all). With --prune, objects this inventory applied before and the files no longer contain are deleted. ' +
        'The whole set is validated first (parse, discovery, server-side dry run): if anything is rejected, nothing is applied.',
    );
  addCommonOptions(cmd)
    .option('--prune', 'delete objects this inventory owns that the files no longer contain', false)
    .addOption(
      new Option('--dry-run <mode>', 'server: ask the API server what would happen, write nothing')
        .choices(['server', 'none'])
        .default('none'),
    )
    .addOption(
      new Option('--validate <mode>', 'server: dry-run the whole set before writing anything (none: skip, faster)')
        .choices(['server', 'none'])
        .default('server'),
    )
    .addOption(
      new Option('-o, --output <format>', 'text lines or the change set as JSON (with --wait: and its health)')
        .choices(['text', 'json'])
        .default('text'),
    )
    .option(
      '--wait',
      'after applying, wait until every object is current (healthy), one failed (degraded) or --timeout passed (timed_out)',
      false,
    )
    .addOption(
      new Option(
        '--timeout <duration>',
        'longest wait for health with --wait (e.g. 90s, 5m; 0: report health as it is at once), and for depends-on ' +
          'waits inside the apply, as reconcile_timeout is for the agent',
      )
        .argParser(timeoutArg)
        .default(parseDuration(DEFAULT_WAIT_TIMEOUT), DEFAULT_WAIT_TIMEOUT),
    )
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  gitops-agent apply -f manifests/                      # apply a directory\n' +
        '  gitops-agent apply -f app.yaml -n demo                # objects without a namespace go to demo\n' +
        '  gitops-agent apply -f manifests/ --prune --inventory my-app   # also delete what was removed from the files\n' +
        '  gitops-agent apply -f manifests/ --dry-run=server -o json\n' +
        '  gitops-agent apply -f manifests/ --wait --timeout 2m   # and wait until it all runs\n' +
        '\nWith --wait, after the object lines: one line per object not current, `<id> <state>: <reason and message>` ' +
        '(failed first), then `health: <result> after <time>` (result: healthy, degraded, timed_out).\n' +
        '\nExit status: 0 when every object was applied or unchanged (with --wait: and all are current), 1 when ' +
        `anything failed or was rejected (nothing waited for), ${WAIT_EXIT_CODES.degraded} with --wait when an object ` +
        `failed (degraded), ${WAIT_EXIT_CODES.timed_out} with --wait when --timeout passed first (timed_out).`,
    )
    .action(async (flags: ApplyFlags) => {
      process.exitCode = await runApply(flags);
    });
  return cmd;
}

async function runApply(flags: ApplyFlags): Promise<number> {
  const log = createLogger({ level: 'warn', format: 'text', name: 'apply' });
  let owned: OwnedEngine | undefined;
  try {
    if (flags.wait && flags.dryRun === 'server') {
      process.stderr.write('error: --wait with --dry-run=server: a dry run applies nothing to wait for\n');
      return 1;
    }
    const unit = await unitFromFlags(flags, {
      prune: flags.prune === true,
      dryRunStrategy: flags.validate === 'server' ? 'server' : 'none',
    });
    if (flags.timeout > 0) unit.config.reconcileTimeoutMs = flags.timeout;
    owned = await openEngine(await loadCredentials(flags.kubeconfig), { logger: log, stateDir: flags.stateDir });
    const { engine } = owned;
    const set = await engine.sync(unit, { dryRun: flags.dryRun === 'server' });
    const failed = set.errors.length > 0 || set.changes.some((c) => c.action === 'failed');
    // A failed apply is not waited for: what failed to apply will not become healthy.
    const health =
      flags.wait && !failed
        ? await engine.waitHealth(unit.name, { timeoutMs: flags.timeout, pruneTimeoutMs: flags.timeout })
        : undefined;
    if (flags.output === 'json') {
      process.stdout.write(JSON.stringify(health ? { ...set, health } : set, null, 2) + '\n');
    } else {
      const { out, err } = applyOutput(set);
      if (health) out.push(...notCurrent(health).map(healthLine), healthSummary(health));
      if (out.length) process.stdout.write(out.join('\n') + '\n');
      if (err.length) process.stderr.write(err.join('\n') + '\n');
    }
    if (failed) return 1;
    return health ? WAIT_EXIT_CODES[health.result] : 0;
  } catch (err) {
    process.stderr.write(`error: ${errorMessage(err)}\n`);
    return 1;
  } finally {
    owned?.close();
  }
}
