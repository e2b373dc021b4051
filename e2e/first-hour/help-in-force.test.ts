/**
 * A new user's first hour (issue 23): `gitops-server serve --help` in the image showed a home
 * folder as the state dir's default while the image sets GITOPS_SERVER_STATE_DIR to
 * /var/lib/gitops-server, which is what the server uses. The built CLIs (dist/bin), as the image
 * runs them: with the variable set, help shows its value as the default in force; without it,
 * the built-in default and the variable's name. The same for `gitops-agent run --help`.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from '@jest/globals';
import { repoRoot } from '../harness/controlplane.js';

const bin = (name: string): string => path.join(repoRoot(), 'dist/bin', `${name}.js`);

/** --help's text with its line wrapping undone. */
async function help(program: string, command: string, env: Record<string, string>): Promise<string> {
  const base = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/home/newuser' };
  const { stdout } = await promisify(execFile)(process.execPath, [bin(program), ...command.split(' '), '--help'], {
    env: { ...base, ...env },
  });
  return stdout.replace(/\s+/g, ' ');
}

describe.each([
  [
    'gitops-server',
    'serve',
    'GITOPS_SERVER_STATE_DIR',
    '/var/lib/gitops-server',
    '"/home/newuser/.local/state/gitops-server"',
  ],
  [
    'gitops-server',
    'agent create',
    'GITOPS_SERVER_STATE_DIR',
    '/var/lib/gitops-server',
    '"/home/newuser/.local/state/gitops-server"',
  ],
  [
    'gitops-server',
    'agent list',
    'GITOPS_SERVER_STATE_DIR',
    '/var/lib/gitops-server',
    '"/home/newuser/.local/state/gitops-server"',
  ],
  [
    'gitops-agent',
    'run',
    'GITOPS_AGENT_STATE_DIR',
    '/var/lib/gitops-agent',
    '/var/lib/gitops-agent in a pod, else $XDG_STATE_HOME/gitops-agent/<agent id>',
  ],
])('%s %s --help', (program, command, variable, imageValue, builtIn) => {
  it(`shows ${variable}'s value as the --state-dir default when it is set (as the image sets it)`, async () => {
    const text = await help(program, command, { [variable]: imageValue });
    expect(text).toContain(`--state-dir <dir>`);
    expect(text).toContain(`(default: "${imageValue}" from ${variable})`);
    expect(text).not.toContain('/home/newuser');
  });

  it(`shows the built-in default and ${variable} when it is not set`, async () => {
    const text = await help(program, command, {});
    expect(text).toContain(`(default: ${builtIn}`);
    expect(text).toContain(`env: ${variable})`);
  });
});
