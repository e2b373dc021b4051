/**
 * `gitops-agent` command line: subcommands are registered here, each in its own module.
 */
import { Command } from 'commander';
import { VERSION } from '../common/version.js';
import { applyCommand } from './commands/apply.js';
import { diffCommand } from './commands/diff.js';
import { runCommand } from './commands/run.js';

export function buildAgentCli(): Command {
  const program = new Command('gitops-agent')
    .description(
      'Runs in a cluster: applies the desired state from Git with JSON patches, waits for it to be healthy, prunes what Git ' +
        'removed and reverts manual changes.',
    )
    .version(VERSION)
    .showHelpAfterError()
    .addCommand(applyCommand())
    .addCommand(diffCommand())
    .addCommand(runCommand());
  return program;
}
