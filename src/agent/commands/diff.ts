/**
 * `gitops-agent diff -f DIR|FILE`: what `apply` would change, asked of the API server with
 * server-side dry runs (nothing is written). Prints, per object that would change, its action and
 * the JSON patch (Secret values masked); exits 1 when there are differences, 0 when none, and 2
 * on errors, as `kubectl diff` does.
 */
import { Command, Option } from 'commander';
import { createLogger } from '../../common/logger.js';
import { errorMessage } from '../../common/errors.js';
import type { Change } from '../reconcile/types.js';
import { openEngine, type OwnedEngine } from './engine-parts.js';
import { addCommonOptions, loadCredentials, unitFromFlags, type CommonFlags } from './manifest-input.js';

interface DiffFlags extends CommonFlags {
  output: 'text' | 'json';
}

/** Readable text for the objects that would change. */
export function formatDiff(changes: Change[]): string {
  const lines: string[] = [];
  for (const c of changes) {
    if (c.action === 'unchanged' || c.action === 'skipped') continue;
    lines.push(`--- ${c.id} (${c.action === 'created' ? 'would be created' : c.action === 'pruned' ? 'would be pruned' : c.action === 'failed' ? 'rejected' : 'would change'})`);
    if (c.action === 'failed') lines.push(`    ${c.reason ?? ''}`);
    for (const op of c.patch ?? []) lines.push(`    ${JSON.stringify(op)}`);
  }
  return lines.join('\n');
}

export function diffCommand(): Command {
  const cmd = new Command('diff')
    .summary('show what apply would change, without writing')
    .description(
      'Compares the files with the live objects and prints, per object that would change, the JSON patch apply would send ' +
        '(Secret values masked). The API server is asked with server-side dry runs, so defaults and normalised values ' +
        '(quantities, stringData, allocated IPs) never show up as differences.',
    );
  addCommonOptions(cmd)
    .option('--prune', 'also list objects that apply --prune would delete', false)
    .addOption(new Option('-o, --output <format>', 'text or JSON').choices(['text', 'json']).default('text'))
    .addHelpText('after', '\nExit status: 0 no differences, 1 differences found, 2 error.')
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
    const { changes, errors } = await engine.diff(unit);
    const shown = changes.filter((c) => c.action !== 'unchanged' && c.action !== 'skipped' && (flags.prune || c.action !== 'pruned'));
    if (flags.output === 'json') process.stdout.write(JSON.stringify({ changes: shown, errors }, null, 2) + '\n');
    else if (shown.length) process.stdout.write(formatDiff(shown) + '\n');
    for (const e of errors) process.stderr.write(`error: ${e.message}\n`);
    if (errors.length || shown.some((c) => c.action === 'failed')) return 2;
    return shown.length ? 1 : 0;
  } catch (err) {
    process.stderr.write(`error: ${errorMessage(err)}\n`);
    return 2;
  } finally {
    owned?.close();
  }
}
