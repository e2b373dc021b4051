/**
 * `gitops-server serve`: every flag has a GITOPS_SERVER_* environment fallback (shown in --help,
 * with its value when set: that is the default in force); options are validated once, every
 * problem listed, before anything starts. The process-wide guards (src/common/process-guards.ts)
 * are installed first: an unhandled rejection is logged and counted in
 * gitops_server_unhandled_rejections_total and never stops the server; an uncaught exception is
 * logged and exits with status 1. SIGTERM/SIGINT are taken from bin/'s first line: a clean stop,
 * exit 0, also during start-up.
 */
import { Command, Option } from 'commander';
import { parseEnvFlag } from '../../common/env-flag.js';
import { helpDefault, inForceHelp, shownValue } from '../../common/help-defaults.js';
import { createLogger } from '../../common/logger.js';
import { installProcessGuards, processStopSignals } from '../../common/process-guards.js';
import { DEFAULT_AUDIENCE } from '../../protocol/jwt.js';
import { gitSourceForServe } from '../git-factory.js';
import { guarded } from './agent.js';
import {
  DEFAULT_LISTEN,
  DEFAULT_POLL_INTERVAL,
  DEFAULT_STATE_DIR,
  resolveServeOptions,
  type RawServeFlags,
} from '../options.js';
import { registerRegistryHealth } from '../metrics.js';
import { ensureStateDir } from '../state-files.js';
import { startServer } from '../serve.js';

const opt = (flags: string, description: string, env: string): Option =>
  new Option(flags, description).env(`GITOPS_SERVER_${env}`);
/**
 * A boolean flag whose GITOPS_SERVER_<env> variable resolveServeOptions reads (true/false, 1/0,
 * ...): commander's .env() would turn it on for "false" (../../common/env-flag.ts).
 */
const envSwitch = (flags: string, description: string, env: string): Option =>
  helpDefault(new Option(flags, description), {
    envVar: `GITOPS_SERVER_${env}`,
    inForce: (v) =>
      `${parseEnvFlag(v) === true ? 'on' : parseEnvFlag(v) === false ? 'off' : 'not a boolean: refused'} from GITOPS_SERVER_${env}=${shownValue(v)}`,
  });

/** The Git source flags, with their GITOPS_SERVER_* variables (also used by `config check --project`). */
export function gitFlagOptions(): [Option, Option, Option] {
  return [
    opt('--git-base-url <url>', 'Git host; project group/name is <url>/group/name.git (GitLab layout)', 'GIT_BASE_URL'),
    opt('--git-token-file <file>', 'file holding a token for private projects on --git-base-url', 'GIT_TOKEN_FILE'),
    opt('--git-root <dir>', 'local repositories instead of a Git host: <dir>/group/name(.git)', 'GIT_ROOT'),
  ];
}

export function serveCommand(): Command {
  const [gitBaseUrl, gitTokenFile, gitRoot] = gitFlagOptions();
  return (
    new Command('serve')
      // The default in force: with GITOPS_SERVER_STATE_DIR set (the image sets it), that value.
      .configureHelp(inForceHelp())
      .description(
        'Serve agents: watch their Git projects and push each new commit over secure WebSockets. Give exactly one Git ' +
          'source: --git-base-url (a Git host over HTTP(S)) or --git-root (local repositories). Give TLS as --tls-cert and ' +
          '--tls-key, or --tls-self-signed for trials. Every option also reads the environment variable shown beside it.',
      )
      .addOption(
        opt('--listen <host:port>', 'address to listen on (HTTPS + WebSocket)', 'LISTEN').default(DEFAULT_LISTEN),
      )
      .addOption(
        opt('--state-dir <dir>', 'agent registry and status (created 0700, files 0600)', 'STATE_DIR').default(
          DEFAULT_STATE_DIR,
        ),
      )
      .addOption(opt('--tls-cert <file>', 'PEM certificate (chain) to serve', 'TLS_CERT'))
      .addOption(opt('--tls-key <file>', 'PEM private key of --tls-cert', 'TLS_KEY'))
      .addOption(
        envSwitch(
          '--tls-self-signed',
          "for trials: create <state-dir>/ca.crt (agents trust it; its key is not kept) and a leaf certificate it signed, and log the CA's SHA-256 fingerprint",
          'TLS_SELF_SIGNED',
        ),
      )
      .addOption(
        envSwitch(
          '--insecure-plaintext',
          'serve plain ws:// and http:// (only behind a TLS-terminating proxy)',
          'INSECURE_PLAINTEXT',
        ),
      )
      .addOption(gitBaseUrl)
      .addOption(gitTokenFile)
      .addOption(gitRoot)
      .addOption(
        opt(
          '--poll-interval <duration>',
          'how often each watched project is fetched (webhooks fetch at once)',
          'POLL_INTERVAL',
        ).default(DEFAULT_POLL_INTERVAL),
      )
      // Removed: a secret in argv shows in `ps`. Still parsed, so that using it says what to do instead.
      .addOption(opt('--webhook-secret <secret>', 'removed: use --webhook-secret-file', 'WEBHOOK_SECRET').hideHelp())
      .addOption(
        opt(
          '--webhook-secret-file <file>',
          'file holding the shared secret for /api/v1/webhooks/* (16+ characters)',
          'WEBHOOK_SECRET_FILE',
        ),
      )
      .addOption(
        opt(
          '--admin-token-file <file>',
          'file holding the bearer token for GET /api/v1/agents (16+ characters)',
          'ADMIN_TOKEN_FILE',
        ),
      )
      .addOption(
        opt(
          '--metrics-listen <[host:]port>',
          'plain-HTTP listener for /metrics, /healthz, /readyz and GET /api/v1/agents; a bare port means 127.0.0.1. ' +
            'When set, /metrics and /api/v1/agents leave the --listen port; without it they are served there, to whoever reaches it (/metrics names projects)',
          'METRICS_LISTEN',
        ),
      )
      .addOption(
        opt(
          '--trusted-proxy <cidr-or-ip>',
          'a TLS-terminating proxy in front of this server (repeatable; the variable is comma-separated): for peers in it, the agent address for failure lockouts and logs is the right-most untrusted X-Forwarded-For hop',
          'TRUSTED_PROXY',
        ).argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), ...value.split(',')]),
      )
      .addOption(opt('--audience <aud>', 'JWT audience agents must sign for', 'AUDIENCE').default(DEFAULT_AUDIENCE))
      .addOption(
        opt(
          '--heartbeat-interval <duration>',
          'WebSocket ping interval; silent peers are cut after two',
          'HEARTBEAT_INTERVAL',
        ).default('30s'),
      )
      .addOption(
        opt('--log-level <level>', 'log level: trace, debug, info, warn or error', 'LOG_LEVEL').default('info'),
      )
      .addOption(
        opt('--log-format <format>', 'json lines, or text for people at a terminal', 'LOG_FORMAT').default('json'),
      )
      .addHelpText(
        'after',
        `
Examples:
  # a trial: Git host on this machine, self-signed certificate (agents pass --ca-file <state-dir>/ca.crt)
  gitops-server serve --git-base-url http://127.0.0.1:8080 --tls-self-signed --log-format text
  # production: real certificate, token for private projects, webhook secret from a file
  gitops-server serve --git-base-url https://gitlab.example.com --git-token-file /run/secrets/git-token \\
    --tls-cert /etc/gitops/tls.crt --tls-key /etc/gitops/tls.key --webhook-secret-file /run/secrets/webhook \\
    --metrics-listen 0.0.0.0:9090   # Prometheus and probes here; not on :8443
`,
      )
      .action(
        guarded(async (flags: RawServeFlags) => {
          const options = resolveServeOptions(flags);
          const logger = createLogger({ level: options.logLevel, format: options.logFormat, name: 'gitops-server' });
          // Listening since bin/ started (a signal before this line exited at once); from here a
          // signal lets start-up finish, then stops cleanly.
          const signals = processStopSignals();
          signals.starting((signal) => logger.info({ signal }, 'stop signal during start-up: stopping once started'));
          // Before anything starts: a rejection during start-up is counted once the metrics exist.
          const guards = installProcessGuards({ logger: logger.child({ component: 'process' }) });
          // Once, here: a volume this process does not own may be used as it is (state-files.ts).
          const loose = await ensureStateDir(options.stateDir);
          if (loose)
            logger.warn(
              { stateDir: options.stateDir, ...loose },
              'state dir is not private and cannot be made so; files inside are written 0600',
            );
          const server = await startServer(options, { gitSource: gitSourceForServe, logger });
          guards.countWith(server.metrics.unhandledRejections);
          registerRegistryHealth(server.metrics, server.registry);
          signals.started();
          const signal = await signals.next;
          logger.info({ signal }, 'stopping');
          await server
            .close()
            .catch((err: unknown) =>
              logger.error({ err: err instanceof Error ? err.message : String(err) }, 'error while stopping'),
            );
        }),
      )
  );
}
