/**
 * `gitops-agent run`: the long-running agent. Reads and validates every option once at start-up
 * (flags, then GITOPS_AGENT_* environment variables, then defaults; every problem listed), builds
 * the engine, state dir, Lease elector, health endpoint and session, and runs until SIGTERM/SIGINT,
 * when it stops cleanly (closes the session, finishes or aborts the apply in flight, releases the
 * Lease) and exits 0. The signals are taken from bin/'s first line (../../common/process-guards.ts):
 * one during start-up lets start-up finish, then stops the same way.
 *
 * Kubernetes access: `--kubeconfig` (or KUBECONFIG) when given; otherwise in-cluster configuration
 * from the pod's ServiceAccount (KUBERNETES_SERVICE_HOST/PORT and the folder in
 * GITOPS_AGENT_SERVICEACCOUNT_DIR, default /var/run/secrets/kubernetes.io/serviceaccount, which
 * tests point at a folder written "as in a pod"). Read by ../kube/credentials.ts, without
 * @kubernetes/client-node (it alone would cost ~70 MiB of the agent's RSS) unless the kubeconfig
 * user needs an exec or auth-provider plugin.
 *
 * Leader identity: `--identity`, else the one kept in the state dir (../identity.ts), so a
 * restarted container renews its own Lease at once.
 */
import { Command, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { createLogger, LOG_LEVELS, type LogFormat, type LogLevel } from '../../common/logger.js';
import { parseEnvFlag, readEnvFlag } from '../../common/env-flag.js';
import { helpDefault, inForceHelp, shownValue } from '../../common/help-defaults.js';
import { errorMessage, UserError } from '../../common/errors.js';
import { parseDuration } from '../../common/duration.js';
import { processStopSignals } from '../../common/process-guards.js';
import { VERSION } from '../../common/version.js';
import { DEFAULT_AUDIENCE, signAgentJwt } from '../../protocol/jwt.js';
import { CONNECT_PATH } from '../../protocol/messages.js';
import { parseToken, type ParsedToken } from '../../protocol/token.js';
import { Engine } from '../reconcile/engine.js';
import { openEngineParts } from './engine-parts.js';
import { KubeClient, DEFAULT_FIELD_MANAGER } from '../kube/client.js';
import {
  inClusterCredentials,
  kubeconfigCredentials,
  kubeconfigPaths,
  readKubeconfig,
  SERVICE_ACCOUNT_DIR,
  type KubeCredentials,
  type ResolvedKubeconfig,
} from '../kube/credentials.js';
import { persistentIdentity } from '../identity.js';
import { kubeEventSink } from '../events.js';
import { parseListen, startHealthServer, type ListenAddress } from '../http.js';
import { leaseName } from '../leader.js';
import { AgentMetrics } from '../metrics.js';
import { unitName } from '../runner.js';
import { AgentRuntime } from '../runtime.js';
import { redactUrl } from '../session.js';
import { StateStore } from '../state.js';
import { ProblemCode } from '../../protocol/problems.js';

interface RunFlags {
  serverUrl?: string;
  tokenFile?: string;
  caFile?: string;
  kubeconfig?: string;
  stateDir?: string;
  listen?: string;
  logLevel?: string;
  logFormat?: string;
  leaseNamespace?: string;
  leaderElect?: boolean;
  resyncInterval?: string;
  audience?: string;
  identity?: string;
  insecurePlaintext?: boolean;
}

/** Options after validation; frozen. */
export interface RunOptions {
  serverUrl: string;
  token: ParsedToken;
  ca?: string;
  /** Where Kubernetes credentials come from: a parsed kubeconfig, or the pod's ServiceAccount. */
  kube: { kubeconfig: ResolvedKubeconfig } | { inCluster: KubeCredentials };
  inCluster: boolean;
  stateDir: string;
  listen?: ListenAddress;
  logLevel: LogLevel;
  logFormat: LogFormat;
  /** `identity` when given explicitly; otherwise the one kept in the state dir (made from `identityBase`). */
  leader?: { namespace: string; name: string; identity?: string; identityBase: string };
  resyncIntervalMs: number;
  audience: string;
}

type Env = Record<string, string | undefined>;

/** Reads flags and environment into RunOptions, listing every problem at once. */
export function resolveRunOptions(flags: RunFlags, env: Env = process.env): RunOptions {
  const problems: string[] = [];
  const problem = (p: string): void => {
    problems.push(p);
  };

  const serverUrl = flags.serverUrl ?? env.GITOPS_AGENT_SERVER_URL;
  const insecure = flags.insecurePlaintext ?? readEnvFlag(env, 'GITOPS_AGENT_INSECURE_PLAINTEXT', problem) ?? false;
  if (!serverUrl)
    problem(`--server-url (or GITOPS_AGENT_SERVER_URL) is required, e.g. wss://gitops.example.com${CONNECT_PATH}`);
  else {
    let url: URL | undefined;
    try {
      url = new URL(serverUrl);
    } catch {
      problem(
        `--server-url is not a valid URL (not echoed: it may hold credentials); example: wss://gitops.example.com${CONNECT_PATH}`,
      );
    }
    if (url) {
      if (url.protocol === 'ws:' && !insecure)
        problem('--server-url: plain ws:// sends everything unencrypted; use wss:// or pass --insecure-plaintext');
      else if (url.protocol !== 'wss:' && url.protocol !== 'ws:')
        problem(`--server-url: must be wss:// (got ${url.protocol})`);
      if (url.username || url.password) problem('--server-url: must not contain credentials');
    }
  }

  const tokenFile = flags.tokenFile ?? env.GITOPS_AGENT_TOKEN_FILE;
  let token: ParsedToken | undefined;
  if (!tokenFile)
    problem(
      '--token-file (or GITOPS_AGENT_TOKEN_FILE) is required: the file holding the token printed by "gitops-server agent create"',
    );
  else {
    try {
      token = parseToken(readFileSync(tokenFile, 'utf8'));
    } catch (err) {
      problem(
        `--token-file ${tokenFile}: ${err instanceof UserError ? err.message : `cannot read (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`}`,
      );
    }
  }

  const caFile = flags.caFile ?? env.GITOPS_AGENT_CA_FILE;
  let ca: string | undefined;
  if (caFile) {
    try {
      ca = readFileSync(caFile, 'utf8');
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) problem(`--ca-file ${caFile}: no PEM certificate in it`);
    } catch (err) {
      problem(`--ca-file ${caFile}: cannot read (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`);
    }
  }

  const kubeconfigFile = flags.kubeconfig ?? env.GITOPS_AGENT_KUBECONFIG;
  const saDir = env.GITOPS_AGENT_SERVICEACCOUNT_DIR ?? SERVICE_ACCOUNT_DIR;
  let kube: RunOptions['kube'] | undefined;
  let inCluster = false;
  try {
    if (kubeconfigFile || env.KUBECONFIG) {
      // KUBECONFIG may list several files, merged as kubectl does.
      kube = { kubeconfig: readKubeconfig(kubeconfigPaths(kubeconfigFile, env)) };
    } else if (env.KUBERNETES_SERVICE_HOST) {
      if (!existsSync(join(saDir, 'token')))
        problem(
          `in-cluster configuration: no ServiceAccount token in ${saDir} (set GITOPS_AGENT_SERVICEACCOUNT_DIR or pass --kubeconfig)`,
        );
      else kube = { inCluster: inClusterCredentials(env, saDir) };
      inCluster = true;
    } else problem('Kubernetes: pass --kubeconfig FILE (or set KUBECONFIG) when not running in a pod');
  } catch (err) {
    problem(`${kubeconfigFile ? `--kubeconfig: ` : env.KUBECONFIG ? 'KUBECONFIG: ' : ''}${errorMessage(err)}`);
  }

  const stateDirFlag = flags.stateDir ?? env.GITOPS_AGENT_STATE_DIR;
  const stateDir =
    stateDirFlag ??
    (inCluster
      ? '/var/lib/gitops-agent'
      : join(
          env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'),
          'gitops-agent',
          token?.agentId.slice(0, 8) ?? 'agent',
        ));

  const listenText = flags.listen ?? env.GITOPS_AGENT_LISTEN ?? '0.0.0.0:8080';
  let listen: ListenAddress | undefined;
  if (listenText !== 'off') {
    listen = parseListen(listenText);
    if (!listen) problem(`--listen: "${listenText}" is not HOST:PORT (example: 0.0.0.0:8080, 127.0.0.1:0) or "off"`);
  }

  const logLevel = (flags.logLevel ?? env.GITOPS_AGENT_LOG_LEVEL ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) problem(`--log-level: "${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  const logFormat = (flags.logFormat ?? env.GITOPS_AGENT_LOG_FORMAT ?? 'json') as LogFormat;
  if (logFormat !== 'json' && logFormat !== 'text') problem(`--log-format: "${logFormat}" is not json or text`);

  let resyncIntervalMs = 300_000;
  const resyncText = flags.resyncInterval ?? env.GITOPS_AGENT_RESYNC_INTERVAL;
  if (resyncText !== undefined) {
    try {
      resyncIntervalMs = parseDuration(resyncText);
    } catch (err) {
      problem(`--resync-interval: ${errorMessage(err)} (0 turns it off)`);
    }
  }

  const leaderElect = flags.leaderElect ?? readEnvFlag(env, 'GITOPS_AGENT_LEADER_ELECT', problem) ?? true;
  const podNamespaceFile = join(saDir, 'namespace');
  const leaseNamespace =
    flags.leaseNamespace ??
    env.GITOPS_AGENT_LEASE_NAMESPACE ??
    env.POD_NAMESPACE ??
    (inCluster && existsSync(podNamespaceFile) ? readFileSync(podNamespaceFile, 'utf8').trim() : undefined) ??
    'default';
  const identity = flags.identity ?? env.GITOPS_AGENT_IDENTITY;
  const identityBase = env.POD_NAME ?? hostname();
  const audience = flags.audience ?? env.GITOPS_AGENT_AUDIENCE ?? DEFAULT_AUDIENCE;

  if (problems.length || !serverUrl || !token || !kube) {
    throw new UserError(
      ProblemCode.INVALID_OPTIONS,
      `gitops-agent run: ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`,
      { data: { problems } },
    );
  }
  return Object.freeze({
    serverUrl,
    token,
    ...(ca ? { ca } : {}),
    kube,
    inCluster,
    stateDir,
    ...(listen ? { listen } : {}),
    logLevel,
    logFormat,
    ...(leaderElect
      ? {
          leader: {
            namespace: leaseNamespace,
            name: leaseName(token.agentId),
            ...(identity ? { identity } : {}),
            identityBase,
          },
        }
      : {}),
    resyncIntervalMs,
    audience,
  });
}

/**
 * An option whose GITOPS_AGENT_<env> variable resolveRunOptions reads (not commander, which would
 * turn a boolean on for "false"); its help shows the default in force (../../common/help-defaults.ts).
 */
function envOption(flags: string, description: string, env: string, shownDefault?: string): Option {
  return helpDefault(new Option(flags, description), {
    envVar: `GITOPS_AGENT_${env}`,
    ...(shownDefault !== undefined ? { default: shownDefault } : {}),
  });
}

export function runCommand(): Command {
  return new Command('run')
    .summary('run the agent: connect to gitops-server and keep the cluster at the desired state')
    .description(
      'Connects to gitops-server over a secure WebSocket (a short-lived JWT from the token per connection; the token itself never ' +
        'leaves the pod), applies each desired state the server sends, waits for its objects to be ready (reconcile_timeout) ' +
        'and reports their health, reverts drift within a second, reports status, and keeps ' +
        'enforcing the last desired state (kept in --state-dir) while the server is unreachable. With two replicas, a Lease elects ' +
        'the one that applies.\n\nEvery option can also be set as GITOPS_AGENT_<OPTION> (e.g. GITOPS_AGENT_SERVER_URL, ' +
        'GITOPS_AGENT_LEADER_ELECT=false). The agent configuration (drift mode, log level, manifest projects) comes from ' +
        'config.yaml through the server: see docs/configuration.md.',
    )
    .configureHelp(inForceHelp())
    .addOption(envOption('--server-url <url>', `server WebSocket URL, wss://HOST${CONNECT_PATH}`, 'SERVER_URL'))
    .addOption(
      envOption(
        '--token-file <file>',
        'file holding the agent token (from "gitops-server agent create")',
        'TOKEN_FILE',
      ),
    )
    .addOption(
      envOption(
        '--ca-file <file>',
        "PEM CA certificate(s) to trust for the server (e.g. a self-signed server's ca.crt)",
        'CA_FILE',
      ),
    )
    .addOption(
      envOption('--kubeconfig <file>', 'kubeconfig file', 'KUBECONFIG', "KUBECONFIG, else the pod's ServiceAccount"),
    )
    .addOption(
      envOption(
        '--state-dir <dir>',
        'where the last desired state is kept (in a pod: an emptyDir)',
        'STATE_DIR',
        '/var/lib/gitops-agent in a pod, else $XDG_STATE_HOME/gitops-agent/<agent id> ($XDG_STATE_HOME: ~/.local/state)',
      ),
    )
    .addOption(
      envOption(
        '--listen <host:port>',
        'health and metrics endpoint (/healthz, /readyz, /metrics), or "off"',
        'LISTEN',
        '0.0.0.0:8080',
      ),
    )
    .addOption(
      envOption(
        '--log-level <level>',
        'initial log level; observability.logging.level in config.yaml overrides it',
        'LOG_LEVEL',
        'info',
      ).choices([...LOG_LEVELS]),
    )
    .addOption(
      envOption('--log-format <format>', 'json lines or readable text', 'LOG_FORMAT', 'json').choices(['json', 'text']),
    )
    .addOption(
      envOption(
        '--lease-namespace <ns>',
        'namespace of the leader-election Lease',
        'LEASE_NAMESPACE',
        'POD_NAMESPACE, else the pod namespace, else default',
      ),
    )
    .addOption(
      helpDefault(new Option('--no-leader-elect', 'apply without a Lease (one replica only, or no Lease rights)'), {
        envVar: 'GITOPS_AGENT_LEADER_ELECT',
        default: 'leader election on',
        inForce: (v) =>
          `leader election ${parseEnvFlag(v) === false ? 'off' : 'on'} from GITOPS_AGENT_LEADER_ELECT=${shownValue(v)}`,
      }),
    )
    .addOption(
      envOption(
        '--resync-interval <duration>',
        'full re-apply as a safety net, e.g. 5m; 0 turns it off',
        'RESYNC_INTERVAL',
        '5m',
      ),
    )
    .addOption(envOption('--audience <aud>', 'JWT audience the server expects', 'AUDIENCE', DEFAULT_AUDIENCE))
    .addOption(
      envOption(
        '--identity <id>',
        "this replica's name in the Lease",
        'IDENTITY',
        'POD_NAME or hostname plus a random suffix, made once and kept in --state-dir',
      ),
    )
    .addOption(
      helpDefault(
        new Option('--insecure-plaintext', 'allow a ws:// server URL (unencrypted; tests and local trials only)'),
        {
          envVar: 'GITOPS_AGENT_INSECURE_PLAINTEXT',
          inForce: (v) => `${parseEnvFlag(v) ? 'on' : 'off'} from GITOPS_AGENT_INSECURE_PLAINTEXT=${shownValue(v)}`,
        },
      ),
    )
    .addHelpText(
      'after',
      `\nExamples:\n  # in a pod (ServiceAccount credentials, Lease in the pod namespace)\n  gitops-agent run --server-url wss://gitops.example.com${CONNECT_PATH} --token-file /etc/gitops-agent/token/token --ca-file /etc/gitops-agent/ca/ca.crt\n  # on a workstation against a trial server with a self-signed certificate\n  gitops-agent run --server-url wss://127.0.0.1:8443${CONNECT_PATH} --token-file agent1.token --ca-file ~/.local/state/gitops-server/ca.crt --kubeconfig ~/.kube/config --no-leader-elect --log-format text\n`,
    )
    .action(async (flags: RunFlags, cmd: Command) => {
      // commander sets leaderElect=true by default for --no-leader-elect; only an explicit flag should beat the
      // environment.
      if (cmd.getOptionValueSource('leaderElect') === 'default') delete flags.leaderElect;
      process.exitCode = await runAgent(flags);
    });
}

/** Runs until SIGTERM/SIGINT; resolves with the exit code. */
export async function runAgent(flags: RunFlags, env: Env = process.env): Promise<number> {
  let options: RunOptions;
  try {
    options = resolveRunOptions(flags, env);
  } catch (err) {
    process.stderr.write(`${errorMessage(err)}\n`);
    return 2;
  }
  const logger = createLogger({ level: options.logLevel, format: options.logFormat, name: 'gitops-agent' });
  // Listening since bin/ started (a signal before this line exited at once); from here a signal
  // lets start-up finish, then stops cleanly.
  const signals = processStopSignals();
  signals.starting((signal) => logger.info({ signal }, 'stop signal during start-up: stopping once started'));
  const metrics = new AgentMetrics();
  const agentId = options.token.agentId;
  logger.info(
    {
      version: VERSION,
      agent: agentId,
      server: redactUrl(options.serverUrl),
      stateDir: options.stateDir,
      leader: options.leader ? `${options.leader.namespace}/${options.leader.name}` : 'off',
    },
    'agent starting',
  );

  let runtime: AgentRuntime | undefined;
  let health: Awaited<ReturnType<typeof startHealthServer>> | undefined;
  let kube: KubeClient | undefined;
  try {
    const credentials =
      'kubeconfig' in options.kube ? await kubeconfigCredentials(options.kube.kubeconfig) : options.kube.inCluster;
    // One client for the engine, leader election and Events: one connection pool, one set of credentials.
    kube = await KubeClient.create(credentials, { fieldManager: DEFAULT_FIELD_MANAGER });
    const engineLog = logger.child({ component: 'engine' });
    const engine = Engine.create(
      await openEngineParts(kube, { logger: engineLog, stateDir: join(options.stateDir, 'engine') }),
      { logger: engineLog },
    );
    let leader: { namespace: string; name: string; identity: string } | undefined;
    if (options.leader) {
      let identity = options.leader.identity;
      if (!identity) {
        const made = await persistentIdentity(options.stateDir, options.leader.identityBase);
        if (made.source === 'unsaved')
          logger.warn(
            { stateDir: options.stateDir, err: made.error },
            'cannot keep the leader identity in the state dir: a restart waits for the Lease to expire',
          );
        identity = made.identity;
      }
      leader = { namespace: options.leader.namespace, name: options.leader.name, identity };
    }
    runtime = new AgentRuntime({
      engine,
      store: new StateStore(options.stateDir),
      logger,
      metrics,
      fieldManager: DEFAULT_FIELD_MANAGER,
      unitName: (project) => unitName(agentId, project),
      session: {
        url: options.serverUrl,
        ca: options.ca,
        agentVersion: VERSION,
        signJwt: () => signAgentJwt(options.token, { audience: options.audience, ttlSeconds: 120 }),
      },
      ...(leader ? { leader: { client: kube, ...leader } } : {}),
      recordEvent: kubeEventSink(kube, leader?.identity ?? hostname(), logger.child({ component: 'events' })),
      resyncIntervalMs: options.resyncIntervalMs,
    });
    const rt = runtime;
    if (options.listen) {
      health = await startHealthServer({ listen: options.listen, ready: () => rt.readiness(), metrics, logger });
      logger.info({ url: health.url }, 'health and metrics listening');
    }
    await runtime.start();
  } catch (err) {
    logger.fatal({ err: errorMessage(err) }, 'agent failed to start');
    await runtime?.stop().catch(() => undefined);
    await health?.close();
    kube?.close();
    return 1;
  }

  signals.started();
  const signal = await signals.next;
  logger.info({ signal }, 'agent stopping');
  const force = setTimeout(() => {
    logger.error({}, 'clean shutdown took too long: exiting');
    process.exit(1);
  }, 20_000);
  force.unref();
  try {
    await runtime.stop();
  } catch (err) {
    logger.error({ err: errorMessage(err) }, 'error while stopping');
  }
  await health?.close();
  kube.close();
  logger.info({}, 'agent stopped');
  return 0;
}
