import { describe, expect, it } from '@jest/globals';
import { Command, Option } from 'commander';
import { describeOption, helpDefault, inForceHelp, shownValue } from './help-defaults.js';

const HOME_DEFAULT = '/home/u/.local/state/gitops-server';
const stateDir = (): Option =>
  new Option('--state-dir <dir>', 'agent registry').env('GITOPS_SERVER_STATE_DIR').default(HOME_DEFAULT);

describe('describeOption', () => {
  it.each([
    [
      'commander .env() and .default(), variable unset: as commander says it',
      stateDir(),
      {},
      `agent registry (default: "${HOME_DEFAULT}", env: GITOPS_SERVER_STATE_DIR)`,
    ],
    [
      'commander .env() and .default(), variable set: its value is the default',
      stateDir(),
      { GITOPS_SERVER_STATE_DIR: '/var/lib/gitops-server' },
      'agent registry (default: "/var/lib/gitops-server" from GITOPS_SERVER_STATE_DIR)',
    ],
    [
      'variable set to empty: shown, as commander uses it',
      stateDir(),
      { GITOPS_SERVER_STATE_DIR: '' },
      'agent registry (default: "" from GITOPS_SERVER_STATE_DIR)',
    ],
    [
      'commander .env() without a default',
      new Option('--git-root <dir>', 'repos').env('GITOPS_SERVER_GIT_ROOT'),
      {},
      'repos (env: GITOPS_SERVER_GIT_ROOT)',
    ],
    [
      'commander boolean .env(), set to "false" (commander turns it on)',
      new Option('--tls-self-signed', 'trial TLS').env('GITOPS_SERVER_TLS_SELF_SIGNED'),
      { GITOPS_SERVER_TLS_SELF_SIGNED: 'false' },
      'trial TLS (on: GITOPS_SERVER_TLS_SELF_SIGNED is set)',
    ],
    [
      'choices first',
      new Option('--log-format <f>', 'format').env('X_FORMAT').default('json').choices(['json', 'text']),
      { X_FORMAT: 'text' },
      'format (choices: "json", "text", default: "text" from X_FORMAT)',
    ],
    [
      'helpDefault with prose default, unset',
      helpDefault(new Option('--state-dir <dir>', 'state'), {
        envVar: 'GITOPS_AGENT_STATE_DIR',
        default: '/var/lib/gitops-agent in a pod',
      }),
      {},
      'state (default: /var/lib/gitops-agent in a pod, env: GITOPS_AGENT_STATE_DIR)',
    ],
    [
      'helpDefault, set',
      helpDefault(new Option('--state-dir <dir>', 'state'), { envVar: 'GITOPS_AGENT_STATE_DIR', default: 'x' }),
      { GITOPS_AGENT_STATE_DIR: '/var/lib/gitops-agent' },
      'state (default: "/var/lib/gitops-agent" from GITOPS_AGENT_STATE_DIR)',
    ],
    [
      'helpDefault inForce for a boolean',
      helpDefault(new Option('--no-leader-elect', 'no Lease'), {
        envVar: 'E',
        default: 'on',
        inForce: (v) => `off from E=${v}`,
      }),
      { E: 'false' },
      'no Lease (off from E=false)',
    ],
    ['no env, no default', new Option('--identity <id>', 'name'), { GITOPS_AGENT_IDENTITY: 'x' }, 'name'],
  ])('%s', (_name, option, env, expected) => {
    expect(describeOption(option, env)).toBe(expected);
  });
});

describe('shownValue', () => {
  it.each([
    ['/var/lib/gitops-server', '"/var/lib/gitops-server"'],
    ['https://user:s3cret@gitlab.example.com/api?private_token=abc#x', '"https://***@gitlab.example.com/api?…"'],
    ['wss://gitops.example.com/api/v1/agent/connect', '"wss://gitops.example.com/api/v1/agent/connect"'],
    ['a\nb"c', '"a\\nb\\"c"'],
    ['x'.repeat(300), `"${'x'.repeat(200)}…"`],
  ])('%j → %s', (value, shown) => {
    expect(shownValue(value)).toBe(shown);
    expect(shownValue(value)).not.toContain('s3cret');
  });
});

describe('inForceHelp', () => {
  it("puts the value in force into a command's --help, read when help is printed", () => {
    const env: Record<string, string | undefined> = {};
    const cmd = new Command('serve').configureHelp(inForceHelp(env)).addOption(stateDir());
    // Help wraps at 80 columns.
    const help0 = cmd.helpInformation().replace(/\s+/g, ' ');
    expect(help0).toContain(`(default: "${HOME_DEFAULT}", env: GITOPS_SERVER_STATE_DIR)`);
    env.GITOPS_SERVER_STATE_DIR = '/var/lib/gitops-server';
    const help = cmd.helpInformation().replace(/\s+/g, ' ');
    expect(help).toContain('(default: "/var/lib/gitops-server" from GITOPS_SERVER_STATE_DIR)');
    expect(help).not.toContain(HOME_DEFAULT);
  });
});
