/**
 * `gitops-server` command line: subcommands are registered here, each in its own module.
 */
import { Command } from 'commander';
import { VERSION } from '../common/version.js';
import { agentCommand } from './commands/agent.js';
import { configCommand } from './commands/config.js';
import { serveCommand } from './commands/serve.js';

export function buildServerCli(): Command {
  const program = new Command('gitops-server')
    .description(
      'Runs beside a Git host: keeps a registry of agents, watches their manifest projects and pushes each new commit to connected agents over secure WebSockets.',
    )
    .version(VERSION)
    .showHelpAfterError();
  program.addCommand(serveCommand());
  program.addCommand(agentCommand());
  program.addCommand(configCommand());
  return program;
}
