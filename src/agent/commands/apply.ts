/**
 * `gitops-agent apply -f DIR|FILE`: one sync of a directory, as the agent does for a commit, from
 * a terminal. Prints `Kind/namespace/name action` per object (or the change set as JSON with
 * `-o json`) and exits 1 when any object failed or the input was rejected.
 */
import { Command, Option } from 'commander';
import { createLogger } from '../../common/logger.js';
import { errorMessage } from '../../common/errors.js';
import { openEngine, type OwnedEngine } from './engine-parts.js';
import { applyOutput } from '../reconcile/report.js';
import { addCommonOptions, loadCredentials, unitFromFlags, type CommonFlags } from './manifest-input.js';

interface ApplyFlags extends CommonFlags {
  dryRun?: 'server' | 'none';
  output: 'text' | 'json';
  validate: 'server' | 'none';
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
      new Option('-o, --output <format>', 'text lines or the change set as JSON')
        .choices(['text', 'json'])
        .default('text'),
    )
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  gitops-agent apply -f manifests/                      # apply a directory\n' +
        '  gitops-agent apply -f app.yaml -n demo                # objects without a namespace go to demo\n' +
        '  gitops-agent apply -f manifests/ --prune --inventory my-app   # also delete what was removed from the files\n' +
        '  gitops-agent apply -f manifests/ --dry-run=server -o json\n' +
        '\nExit status: 0 when every object was applied or unchanged, 1 when anything failed or was rejected.',
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
    const unit = await unitFromFlags(flags, {
      prune: flags.prune === true,
      dryRunStrategy: flags.validate === 'server' ? 'server' : 'none',
    });
    owned = await openEngine(await loadCredentials(flags.kubeconfig), { logger: log, stateDir: flags.stateDir });
    const { engine } = owned;
    const set = await engine.sync(unit, { dryRun: flags.dryRun === 'server' });
    if (flags.output === 'json') {
      process.stdout.write(JSON.stringify(set, null, 2) + '\n');
    } else {
      const { out, err } = applyOutput(set);
      if (out.length) process.stdout.write(out.join('\n') + '\n');
      if (err.length) process.stderr.write(err.join('\n') + '\n');
    }
    return set.errors.length || set.changes.some((c) => c.action === 'failed') ? 1 : 0;
  } catch (err) {
    process.stderr.write(`error: ${errorMessage(err)}\n`);
    return 1;
  } finally {
    owned?.close();
  }
}
