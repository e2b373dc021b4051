/**
 * `gitops-agent diff -f DIR|FILE`: what `apply` would change, asked of the API server with
 * server-side dry runs (nothing is written). Prints, per object that would change, its action and
 * the JSON patch (Secret values masked), and per object apply would skip (owned by another
 * inventory, say) why; exits 0 only when an apply would be a no-op and converge, 1 when there are
 * differences or skipped objects, and 2 on errors, as `kubectl diff` does (report.ts diffOutcome).
 */
import { Command, Option } from 'commander';
import { createLogger } from '../../common/logger.js';
import { errorMessage } from '../../common/errors.js';
import { diffOutcome, formatDiff } from '../reconcile/report.js';
import { openEngine, type OwnedEngine } from './engine-parts.js';
import { addCommonOptions, loadCredentials, unitFromFlags, type CommonFlags } from './manifest-input.js';

interface DiffFlags extends CommonFlags {
  output: 'text' | 'json';
}

export function diffCommand(): Command {
  const cmd = new Command('diff')
    .summary('show what apply would change, without writing')
    .description(
      'Compares the files with the live objects and prints, per object that would change, the JSON patch apply would send ' +
        '(Secret values masked), and per object apply would skip (owned by another inventory, or not by any under ' +
        'must_match: run diff with the --inventory apply uses) the reason apply gives. The API server is asked with ' +
        'server-side dry runs, so defaults and normalised values (quantities, stringData, allocated IPs) never show up as differences.',
    );
  addCommonOptions(cmd)
    .option('--prune', 'also list objects that apply --prune would delete', false)
    .addOption(new Option('-o, --output <format>', 'text or JSON').choices(['text', 'json']).default('text'))
    .addHelpText(
      'after',
      '\nExit status: 0 an apply would change nothing and leave every object as the files say, 1 differences found ' +
        '(objects apply would skip included), 2 error.',
    )
    .action(async (flags: DiffFlags) => {
      process.exitCode = await runDiff(flags);
    });
  return cmd;
}

async function runDiff(flags: DiffFlags): Promise<number> {
  const log = createLogger({ level: 'warn', format: 'text', name: 'diff' });
  let owned: OwnedEngine | undefined;
  try {
    const unit = await unitFromFlags(flags, { prune: flags.prune === true, dryRunStrategy: 'server' });
    owned = await openEngine(await loadCredentials(flags.kubeconfig), { logger: log, stateDir: flags.stateDir });
    const { engine } = owned;
    const set = await engine.diff(unit);
    const { shown, exitCode } = diffOutcome(set);
    if (flags.output === 'json')
      process.stdout.write(JSON.stringify({ changes: shown, errors: set.errors }, null, 2) + '\n');
    else if (shown.length) process.stdout.write(formatDiff(shown).join('\n') + '\n');
    for (const e of set.errors) process.stderr.write(`error: ${e.message}\n`);
    return exitCode;
  } catch (err) {
    process.stderr.write(`error: ${errorMessage(err)}\n`);
    return 2;
  } finally {
    owned?.close();
  }
}
