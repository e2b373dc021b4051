/**
 * `gitops-server serve` options: typed, with documented defaults and GITOPS_SERVER_* environment
 * fallbacks (applied by commander), validated once at start-up with EVERY problem listed, then
 * frozen. Secrets given as files are read here so the rest of the server never touches paths.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { parseDuration } from '../common/duration.js';
import { readEnvFlag } from '../common/env-flag.js';
import { UserError } from '../common/errors.js';
import { LOG_LEVELS, type LogFormat, type LogLevel } from '../common/logger.js';
import { DEFAULT_AUDIENCE } from '../protocol/jwt.js';
import { parseTrustedProxies } from './client-address.js';

export const DEFAULT_LISTEN = '0.0.0.0:8443';
export const DEFAULT_STATE_DIR = path.join(
  process.env.XDG_STATE_HOME ?? path.join(homedir(), '.local', 'state'),
  'gitops-server',
);
export const DEFAULT_POLL_INTERVAL = '15s';
/** Shortest secret accepted for webhooks and the admin API (HMAC keys shorter than this are guessable). */
const MIN_SECRET_LENGTH = 16;

/** The raw flag values as commander hands them over (strings, booleans, undefined). */
export interface RawServeFlags {
  listen?: string;
  stateDir?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsSelfSigned?: boolean;
  insecurePlaintext?: boolean;
  gitBaseUrl?: string;
  gitTokenFile?: string;
  gitRoot?: string;
  pollInterval?: string;
  /** Removed (a secret in argv shows in `ps`): accepted only to be refused with a clear message. */
  webhookSecret?: string;
  webhookSecretFile?: string;
  adminTokenFile?: string;
  metricsListen?: string;
  /** Repeatable; the environment variable is comma-separated. */
  trustedProxy?: string[];
  audience?: string;
  logLevel?: string;
  logFormat?: string;
  heartbeatInterval?: string;
}

export type TlsOptions = { mode: 'files'; cert: string; key: string } | { mode: 'self-signed' } | { mode: 'plaintext' };
export type GitOptions = { mode: 'http'; baseUrl: string; token?: string } | { mode: 'local'; root: string };

export interface ServeOptions {
  listen: { host: string; port: number };
  stateDir: string;
  tls: TlsOptions;
  git: GitOptions;
  pollIntervalMs: number;
  webhookSecret?: string;
  adminToken?: string;
  /** A plain-HTTP listener for /metrics, /healthz, /readyz and /api/v1/agents, which then leave the agents' port. */
  metricsListen?: { host: string; port: number };
  /** Proxies (addresses, CIDR networks) whose X-Forwarded-For names the agent's address. */
  trustedProxies: string[];
  audience: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
  heartbeatMs: number;
}

/** Validates the flags; throws one UserError listing every problem. */
export function resolveServeOptions(
  flags: RawServeFlags,
  env: Record<string, string | undefined> = process.env,
): Readonly<ServeOptions> {
  const problems: string[] = [];
  const problem = (text: string): void => {
    problems.push(text);
  };
  // Boolean switches read their variables here, not through commander (see env-flag.ts).
  const tlsSelfSigned = flags.tlsSelfSigned ?? readEnvFlag(env, 'GITOPS_SERVER_TLS_SELF_SIGNED', problem);
  const insecurePlaintext = flags.insecurePlaintext ?? readEnvFlag(env, 'GITOPS_SERVER_INSECURE_PLAINTEXT', problem);

  const listen = parseListen(flags.listen ?? DEFAULT_LISTEN, problem);

  const tlsModes = [
    flags.tlsCert || flags.tlsKey ? 'files' : '',
    tlsSelfSigned ? 'self-signed' : '',
    insecurePlaintext ? 'plaintext' : '',
  ].filter(Boolean);
  let tls: TlsOptions = { mode: 'self-signed' };
  if (tlsModes.length === 0)
    problem(
      'TLS: give --tls-cert and --tls-key, or --tls-self-signed for trials (plain ws:// only with --insecure-plaintext)',
    );
  else if (tlsModes.length > 1)
    problem(
      `TLS: choose one of --tls-cert/--tls-key, --tls-self-signed, --insecure-plaintext (got ${tlsModes.join(', ')})`,
    );
  else if (tlsModes[0] === 'files') {
    if (!flags.tlsCert || !flags.tlsKey) problem('TLS: --tls-cert and --tls-key go together');
    else {
      readable(flags.tlsCert, '--tls-cert', problem);
      readable(flags.tlsKey, '--tls-key', problem);
      tls = { mode: 'files', cert: flags.tlsCert, key: flags.tlsKey };
    }
  } else tls = { mode: tlsModes[0] as 'self-signed' | 'plaintext' };

  const git = resolveGitOptions(flags, problem);

  const pollIntervalMs = duration(flags.pollInterval ?? DEFAULT_POLL_INTERVAL, '--poll-interval', problem, 1000);
  const heartbeatMs = duration(flags.heartbeatInterval ?? '30s', '--heartbeat-interval', problem, 100);

  if (flags.webhookSecret !== undefined) {
    problem(
      '--webhook-secret (GITOPS_SERVER_WEBHOOK_SECRET) is no longer accepted: a secret on the command line shows in `ps`; write it to a file (mode 0600) and pass --webhook-secret-file FILE (GITOPS_SERVER_WEBHOOK_SECRET_FILE)',
    );
  }
  const webhookSecret = flags.webhookSecretFile
    ? readSecret(flags.webhookSecretFile, '--webhook-secret-file', MIN_SECRET_LENGTH, problem)
    : undefined;
  const metricsListen =
    flags.metricsListen !== undefined ? parseMetricsListen(flags.metricsListen, problem) : undefined;
  if (
    metricsListen &&
    metricsListen.port !== 0 &&
    metricsListen.port === listen.port &&
    (metricsListen.host === listen.host || isWildcard(metricsListen.host) || isWildcard(listen.host))
  ) {
    problem(`--metrics-listen: ${flags.metricsListen} is the same port as --listen`);
  }
  const trustedProxies = (flags.trustedProxy ?? [])
    .flatMap((p) => p.split(','))
    .map((p) => p.trim())
    .filter(Boolean);
  for (const text of parseTrustedProxies(trustedProxies).problems) problem(text);
  const adminToken = flags.adminTokenFile
    ? readSecret(flags.adminTokenFile, '--admin-token-file', MIN_SECRET_LENGTH, problem)
    : undefined;

  const audience = flags.audience ?? DEFAULT_AUDIENCE;
  if (!audience.trim()) problem('--audience must not be empty');

  const logLevel = (flags.logLevel ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel))
    problem(`--log-level: "${flags.logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  const logFormat = (flags.logFormat ?? 'json') as LogFormat;
  if (logFormat !== 'json' && logFormat !== 'text') problem(`--log-format: "${flags.logFormat}" is not json or text`);

  if (problems.length) {
    throw new UserError(
      'INVALID_OPTIONS',
      `gitops-server serve: ${problems.length} problem${problems.length > 1 ? 's' : ''} with the options:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
      { data: { problems } },
    );
  }
  return Object.freeze({
    listen,
    stateDir: path.resolve(flags.stateDir ?? DEFAULT_STATE_DIR),
    tls,
    git,
    pollIntervalMs,
    heartbeatMs,
    ...(webhookSecret ? { webhookSecret } : {}),
    ...(adminToken ? { adminToken } : {}),
    ...(metricsListen ? { metricsListen } : {}),
    trustedProxies,
    audience,
    logLevel,
    logFormat,
  });
}

/**
 * The Git source flags (--git-base-url, --git-token-file, --git-root), shared by `serve` and
 * `config check --project`; each problem goes to `problem`.
 */
export function resolveGitOptions(
  flags: Pick<RawServeFlags, 'gitBaseUrl' | 'gitTokenFile' | 'gitRoot'>,
  problem: (text: string) => void,
): GitOptions {
  let git: GitOptions = { mode: 'local', root: '' };
  if (flags.gitBaseUrl && flags.gitRoot) problem('Git: choose --git-base-url or --git-root, not both');
  else if (flags.gitBaseUrl) {
    let url: URL | undefined;
    try {
      url = new URL(flags.gitBaseUrl);
    } catch {
      problem(`--git-base-url: "${redactUrl(flags.gitBaseUrl)}" is not a URL (example: https://gitlab.example.com)`);
    }
    if (url && url.protocol !== 'https:' && url.protocol !== 'http:')
      problem(`--git-base-url: only http(s) is supported (smart HTTP), got ${url.protocol}`);
    if (url && (url.username || url.password))
      problem('--git-base-url: put credentials in --git-token-file, not in the URL');
    const token = flags.gitTokenFile ? readSecret(flags.gitTokenFile, '--git-token-file', 1, problem) : undefined;
    git = { mode: 'http', baseUrl: flags.gitBaseUrl.replace(/\/+$/, ''), ...(token ? { token } : {}) };
  } else if (flags.gitRoot) {
    readable(flags.gitRoot, '--git-root', problem);
    git = { mode: 'local', root: path.resolve(flags.gitRoot) };
    if (flags.gitTokenFile) problem('--git-token-file applies to --git-base-url only');
  } else problem('Git: give --git-base-url URL (a Git host such as GitLab) or --git-root DIR (local repositories)');
  return git;
}

function parseListen(text: string, problem: (t: string) => void): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    problem(`--listen: "${text}" is not HOST:PORT (example: 0.0.0.0:8443, 127.0.0.1:0, [::]:8443)`);
    return { host: '0.0.0.0', port: 8443 };
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

const isWildcard = (host: string): boolean => host === '0.0.0.0' || host === '::';

/**
 * `--metrics-listen`: `HOST:PORT`, `[v6]:PORT`, or a bare `:PORT` / `PORT`, which means loopback
 * (127.0.0.1): what this port shows is for Prometheus and operators, not for whoever reaches the host.
 */
export function parseMetricsListen(
  text: string,
  problem: (t: string) => void,
): { host: string; port: number } | undefined {
  const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([^:[\]/\s]*)):)?(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    problem(
      `--metrics-listen: "${text}" is not HOST:PORT or PORT (examples: 9090 = 127.0.0.1:9090, 0.0.0.0:9090 for a Prometheus in another pod)`,
    );
    return undefined;
  }
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

function duration(text: string, flag: string, problem: (t: string) => void, minMs: number): number {
  try {
    const ms = parseDuration(text);
    if (ms < minMs) problem(`${flag}: at least ${minMs}ms`);
    return ms;
  } catch (err) {
    problem(`${flag}: ${(err as Error).message}`);
    return minMs;
  }
}

/** Checks read access only: the file itself is read once, by whoever uses it (tls.ts). */
function readable(file: string, flag: string, problem: (t: string) => void): void {
  try {
    accessSync(file, constants.R_OK);
  } catch (err) {
    problem(`${flag}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

function readSecret(file: string, flag: string, minLength: number, problem: (t: string) => void): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    problem(`${flag}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    return undefined;
  }
  if (text.length < minLength) {
    problem(`${flag}: ${file} must hold a secret of at least ${minLength} characters`);
    return undefined;
  }
  return text;
}

function redactUrl(text: string): string {
  return text.replace(/\/\/[^@/]*@/, '//[redacted]@');
}
