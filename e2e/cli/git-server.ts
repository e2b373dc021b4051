/**
 * `npm run git-server -- --root DIR [--port N] [--token-file F]`: serves every bare repository
 * under DIR over smart HTTP (git http-backend) until SIGINT/SIGTERM. Prints the base URL on stdout.
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import { startGitServer } from '../harness/git-server.js';

async function main(): Promise<void> {
  const program = new Command('git-server')
    .description(
      'Serve the bare repositories under a folder over smart HTTP (clone, fetch, push) at http://127.0.0.1:PORT/<name>.git',
    )
    .requiredOption('--root <dir>', 'folder holding bare repositories (created when missing)')
    .option('--port <n>', 'port on 127.0.0.1 (0: any free port)', '0')
    .option('--token-file <file>', 'require this token (basic password, Bearer or Private-Token)')
    .showHelpAfterError();
  program.parse();
  const opts = program.opts<{ root: string; port: string; tokenFile?: string }>();
  const port = Number.parseInt(opts.port, 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) program.error(`--port ${opts.port}: expected a port number`);
  const root = path.resolve(opts.root);
  await mkdir(root, { recursive: true });
  const token = opts.tokenFile ? (await readFile(opts.tokenFile, 'utf8')).trim() : undefined;

  const server = await startGitServer({ root, port, token });
  process.stdout.write(`${server.url}\n`);
  process.stderr.write(
    `serving bare repositories under ${root}: clone ${server.url}/<name>.git; create one with git init --bare ${root}/<name>.git\n`,
  );

  const stop = (): void => {
    void server.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`git-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
