/**
 * Where the agent's Kubernetes identity comes from: the API server URL, the TLS material for the
 * one keep-alive agent, and the Authorization header per request. Reads the two sources a pod and
 * a workstation use — in-cluster ServiceAccount files and kubeconfig files (KUBECONFIG with several
 * paths merged as kubectl does) — with nothing heavier than `yaml`.
 *
 * Why not @kubernetes/client-node's KubeConfig: importing it costs ~70 MiB of RSS (the generated
 * API models load with it), more than half the agent's memory goal. It is still loaded, lazily,
 * for kubeconfig users with `exec` or `auth-provider` (cloud plugins), whose protocols it
 * implements; then the memory is paid only by those users.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type https from 'node:https';
import { homedir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml, YAMLError } from 'yaml';
import { errorMessage, UserError } from '../../common/errors.js';
import { ProblemCode } from '../../protocol/problems.js';

/** How long a token read from a file is reused before reading the file again (bound tokens rotate). */
export const TOKEN_REFRESH_MS = 60_000;

/** TLS options for the shared https.Agent. */
export interface TlsMaterial {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  /** SNI and certificate name check (kubeconfig `tls-server-name`). */
  servername?: string;
  /** False only for `insecure-skip-tls-verify: true`. */
  rejectUnauthorized?: boolean;
}

/** What the raw client needs to talk to one API server as one identity. */
export interface KubeCredentials {
  readonly server: URL;
  readonly tls: TlsMaterial;
  /** Namespace of the current context or the pod, when known. */
  readonly namespace?: string;
  /**
   * Headers proving who we are (Authorization), cached for up to a minute; `refresh` re-reads
   * token files and re-runs plugins (after a 401).
   */
  authHeaders(refresh?: boolean): Promise<Record<string, string>>;
}

/**
 * The part of @kubernetes/client-node's KubeConfig used to adapt one (tests and the bench build
 * theirs with client-node). A type only: nothing is loaded for it.
 */
export interface KubeConfigLike {
  getCurrentCluster(): { server: string; tlsServerName?: string } | null;
  applyToHTTPSOptions(opts: https.RequestOptions): Promise<void>;
}

/** Credentials, or a client-node KubeConfig to take them from. */
export type CredentialSource = KubeCredentials | KubeConfigLike;

function isKubeConfigLike(source: CredentialSource): source is KubeConfigLike {
  return typeof (source as KubeConfigLike).applyToHTTPSOptions === 'function';
}

/** Resolves a source to credentials (a KubeConfig is asked through `applyToHTTPSOptions`). */
export async function toCredentials(source: CredentialSource): Promise<KubeCredentials> {
  return isKubeConfigLike(source) ? fromKubeConfig(source) : source;
}

function headersOf(opts: https.RequestOptions): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.headers ?? {})) if (typeof v === 'string') headers[k] = v;
  if (opts.auth) headers.Authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`;
  return headers;
}

/** Adapts a client-node KubeConfig: TLS read once, headers re-asked every minute or on refresh. */
export async function fromKubeConfig(kc: KubeConfigLike): Promise<KubeCredentials> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new UserError(ProblemCode.KUBECONFIG_NO_CLUSTER, 'kubeconfig: no current cluster');
  const ask = async (): Promise<https.RequestOptions> => {
    const opts: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(opts);
    // applyToHTTPSOptions also builds a throw-away agent; only the resolved credentials are kept.
    (opts.agent as https.Agent | undefined)?.destroy();
    return opts;
  };
  const first = await ask();
  const tls: TlsMaterial = {
    ca: first.ca as TlsMaterial['ca'],
    cert: first.cert as TlsMaterial['cert'],
    key: first.key as TlsMaterial['key'],
    ...(first.servername ? { servername: first.servername } : {}),
    ...(first.rejectUnauthorized !== undefined ? { rejectUnauthorized: first.rejectUnauthorized } : {}),
  };
  const headers = cached(async () => headersOf(await ask()), headersOf(first));
  return { server: new URL(cluster.server), tls, authHeaders: headers };
}

/** A value recomputed when older than TOKEN_REFRESH_MS or when asked to; concurrent calls share one read. */
function cached<T>(load: () => Promise<T>, initial?: T): (refresh?: boolean) => Promise<T> {
  let value: Promise<T> | undefined = initial === undefined ? undefined : Promise.resolve(initial);
  let at = initial === undefined ? 0 : Date.now();
  return (refresh = false) => {
    if (!value || refresh || Date.now() - at > TOKEN_REFRESH_MS) {
      at = Date.now();
      const next = load();
      // A failed read is not cached: the next request tries again.
      next.catch(() => {
        if (value === next) value = undefined;
      });
      value = next;
    }
    return value;
  };
}

/** Reads a token file for a header; the file name is in the error, never its content. */
function tokenFileHeaders(file: string): (refresh?: boolean) => Promise<Record<string, string>> {
  return cached(async (): Promise<Record<string, string>> => {
    let token: string;
    try {
      token = (await readFile(file, 'utf8')).trim();
    } catch (err) {
      throw new UserError(
        ProblemCode.KUBE_TOKEN_UNREADABLE,
        `${file}: cannot read the token (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`,
        { cause: err },
      );
    }
    return token ? { Authorization: `Bearer ${token}` } : {};
  });
}

type Env = Record<string, string | undefined>;

/**
 * In-cluster credentials from a ServiceAccount folder (token, ca.crt, namespace) and
 * KUBERNETES_SERVICE_HOST/PORT. The token file is re-read every minute and after a 401: bound
 * ServiceAccount tokens are rotated by the kubelet.
 */
export function inClusterCredentials(env: Env, dir: string): KubeCredentials {
  const host = env.KUBERNETES_SERVICE_HOST ?? '';
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host)
    throw new UserError(
      ProblemCode.KUBE_NOT_IN_CLUSTER,
      'in-cluster configuration: KUBERNETES_SERVICE_HOST is not set',
    );
  const server = new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`);
  const caFile = path.join(dir, 'ca.crt');
  let ca: string;
  try {
    ca = readFileSync(caFile, 'utf8');
  } catch (err) {
    throw new UserError(
      ProblemCode.KUBE_CA_UNREADABLE,
      `${caFile}: cannot read the cluster CA (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`,
      { cause: err },
    );
  }
  let namespace: string | undefined;
  try {
    namespace = readFileSync(path.join(dir, 'namespace'), 'utf8').trim() || undefined;
  } catch {
    /* optional */
  }
  return {
    server,
    tls: { ca },
    ...(namespace ? { namespace } : {}),
    authHeaders: tokenFileHeaders(path.join(dir, 'token')),
  };
}

// ---------------------------------------------------------------------------------------------
// kubeconfig files

interface NamedEntry<T> {
  name: string;
  value: T;
  /** Folder of the file the entry came from: relative paths resolve against it. */
  dir: string;
}

/** The cluster, user and namespace of the current context, after merging every file. */
export interface ResolvedKubeconfig {
  context: string;
  cluster: NamedEntry<Record<string, unknown>>;
  user: NamedEntry<Record<string, unknown>>;
  namespace?: string;
  /** The merged document with absolute paths (handed to client-node for exec / auth-provider users). */
  merged: Record<string, unknown>;
}

const PATH_FIELDS = {
  cluster: ['certificate-authority'],
  user: ['client-certificate', 'client-key', 'tokenFile'],
} as const;

function asRecord(v: unknown): Record<string, unknown> {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** The files named by `--kubeconfig`, else KUBECONFIG (path-list), else ~/.kube/config. */
export function kubeconfigPaths(file: string | undefined, env: Env = process.env): string[] {
  if (file) return [file];
  const list = (env.KUBECONFIG ?? '').split(path.delimiter).filter(Boolean);
  return list.length ? list : [path.join(env.HOME ?? homedir(), '.kube', 'config')];
}

/**
 * Reads and merges kubeconfig files as kubectl does: the first file to define a cluster, user or
 * context name wins, and the first non-empty `current-context` is used. Missing files in a list of
 * several are skipped (as kubectl does); a single missing file is an error.
 */
export function readKubeconfig(files: string[], contextOverride?: string): ResolvedKubeconfig {
  const maps = {
    clusters: new Map<string, NamedEntry<Record<string, unknown>>>(),
    users: new Map<string, NamedEntry<Record<string, unknown>>>(),
    contexts: new Map<string, NamedEntry<Record<string, unknown>>>(),
  };
  let current: string | undefined;
  let read = 0;
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if (files.length > 1 && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new UserError(
        ProblemCode.KUBECONFIG_UNREADABLE,
        `${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`,
        { cause: err },
      );
    }
    read++;
    let doc: Record<string, unknown>;
    try {
      doc = asRecord(parseYaml(text));
    } catch (err) {
      // yaml's message (and so the error as a cause) quotes the offending line, which may be a
      // token or a key: keep its position and first sentence only.
      const pos = err instanceof YAMLError ? err.linePos?.[0] : undefined;
      const reason = errorMessage(err)
        .split('\n')[0]
        .replace(/ at line \d+, column \d+:?$/, '');
      throw new UserError(
        ProblemCode.KUBECONFIG_INVALID,
        `${pos ? `${file}:${pos.line}:${pos.col}` : file}: not valid YAML (${reason})`,
      );
    }
    const dir = path.dirname(path.resolve(file));
    current ??= str(doc['current-context']);
    for (const [key, field] of [
      ['clusters', 'cluster'],
      ['users', 'user'],
      ['contexts', 'context'],
    ] as const) {
      const list = Array.isArray(doc[key]) ? (doc[key] as unknown[]) : [];
      for (const item of list) {
        const rec = asRecord(item);
        const name = str(rec.name);
        if (name && !maps[key].has(name)) maps[key].set(name, { name, value: asRecord(rec[field]), dir });
      }
    }
  }
  if (!read)
    throw new UserError(ProblemCode.KUBECONFIG_UNREADABLE, `${files.join(path.delimiter)}: no kubeconfig file found`);
  const contextName = contextOverride ?? current;
  const where = files.join(path.delimiter);
  if (!contextName) throw new UserError(ProblemCode.KUBECONFIG_NO_CLUSTER, `${where}: no current-context`);
  const context = maps.contexts.get(contextName);
  if (!context)
    throw new UserError(ProblemCode.KUBECONFIG_NO_CLUSTER, `${where}: context "${contextName}" is not defined`);
  const cluster = maps.clusters.get(str(context.value.cluster) ?? '');
  if (!cluster || !str(cluster.value.server))
    throw new UserError(
      ProblemCode.KUBECONFIG_NO_CLUSTER,
      `${where}: context "${contextName}" names no cluster with a server`,
    );
  const user = maps.users.get(str(context.value.user) ?? '') ?? { name: '', value: {}, dir: cluster.dir };

  const absolute = (entry: NamedEntry<Record<string, unknown>>, fields: readonly string[]): Record<string, unknown> => {
    const out = { ...entry.value };
    for (const f of fields) {
      const v = str(out[f]);
      if (v) out[f] = path.resolve(entry.dir, v);
    }
    const exec = asRecord(out.exec);
    const command = str(exec.command);
    // kubectl resolves an exec command given as a relative path (with a slash) against the file's folder.
    if (command && command.includes('/') && !path.isAbsolute(command))
      out.exec = { ...exec, command: path.resolve(entry.dir, command) };
    return out;
  };
  const clusterValue = absolute(cluster, PATH_FIELDS.cluster);
  const userValue = absolute(user, PATH_FIELDS.user);
  const namespace = str(context.value.namespace);
  const merged = {
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': contextName,
    clusters: [{ name: cluster.name, cluster: clusterValue }],
    users: [{ name: user.name || 'user', user: userValue }],
    contexts: [{ name: contextName, context: { ...context.value, cluster: cluster.name, user: user.name || 'user' } }],
  };
  return {
    context: contextName,
    cluster: { ...cluster, value: clusterValue },
    user: { ...user, value: userValue },
    ...(namespace ? { namespace } : {}),
    merged,
  };
}

/** True when the user needs a plugin (exec or auth-provider), which client-node implements. */
export function needsPlugin(config: ResolvedKubeconfig): boolean {
  return config.user.value.exec !== undefined || config.user.value['auth-provider'] !== undefined;
}

function material(inline: unknown, file: unknown, what: string): string | Buffer | undefined {
  const data = str(inline);
  if (data) return Buffer.from(data, 'base64');
  const name = str(file);
  if (!name) return undefined;
  try {
    return readFileSync(name);
  } catch (err) {
    throw new UserError(
      ProblemCode.KUBECONFIG_UNREADABLE,
      `${name}: cannot read the ${what} (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`,
      { cause: err },
    );
  }
}

/**
 * Credentials for a resolved kubeconfig. Client certificates, tokens, token files and basic auth
 * are read here; `exec` and `auth-provider` users load @kubernetes/client-node on demand.
 */
export async function kubeconfigCredentials(config: ResolvedKubeconfig): Promise<KubeCredentials> {
  if (needsPlugin(config)) {
    // Only these users pay for client-node (~70 MiB): its exec and auth-provider support is kept.
    const { KubeConfig } = await import('@kubernetes/client-node');
    const kc = new KubeConfig();
    kc.loadFromString(stringifyYaml(config.merged));
    kc.setCurrentContext(config.context);
    const creds = await fromKubeConfig(kc);
    return config.namespace ? { ...creds, namespace: config.namespace } : creds;
  }
  const c = config.cluster.value;
  const u = config.user.value;
  const tls: TlsMaterial = {};
  const ca = material(c['certificate-authority-data'], c['certificate-authority'], 'cluster CA');
  if (ca) tls.ca = ca;
  const cert = material(u['client-certificate-data'], u['client-certificate'], 'client certificate');
  const key = material(u['client-key-data'], u['client-key'], 'client key');
  if (cert) tls.cert = cert;
  if (key) tls.key = key;
  const serverName = str(c['tls-server-name']);
  if (serverName) tls.servername = serverName;
  if (c['insecure-skip-tls-verify'] === true) tls.rejectUnauthorized = false;

  const token = str(u.token);
  const tokenFile = str(u.tokenFile);
  const username = str(u.username);
  let authHeaders: KubeCredentials['authHeaders'];
  if (token) authHeaders = async () => ({ Authorization: `Bearer ${token}` });
  else if (tokenFile) authHeaders = tokenFileHeaders(tokenFile);
  else if (username) {
    const basic = { Authorization: `Basic ${Buffer.from(`${username}:${str(u.password) ?? ''}`).toString('base64')}` };
    authHeaders = async () => basic;
  } else authHeaders = async () => ({});
  return {
    server: new URL(str(c.server) ?? ''),
    tls,
    ...(config.namespace ? { namespace: config.namespace } : {}),
    authHeaders,
  };
}

/** `SERVICE_ACCOUNT_DIR` in a pod. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * client-node's default order, for `apply` and `diff`: the given file, else KUBECONFIG, else
 * ~/.kube/config, else in-cluster (when KUBERNETES_SERVICE_HOST is set).
 */
export async function defaultCredentials(
  file: string | undefined,
  env: Env = process.env,
  serviceAccountDir = SERVICE_ACCOUNT_DIR,
): Promise<KubeCredentials> {
  const paths = kubeconfigPaths(file, env);
  const explicit = Boolean(file || env.KUBECONFIG);
  let config: ResolvedKubeconfig | undefined;
  try {
    config = readKubeconfig(paths);
  } catch (err) {
    const missing = err instanceof UserError && err.code === ProblemCode.KUBECONFIG_UNREADABLE && !explicit;
    if (!missing || !env.KUBERNETES_SERVICE_HOST) {
      if (missing)
        throw new UserError(
          ProblemCode.KUBECONFIG_NO_CLUSTER,
          'no cluster configured: pass --kubeconfig FILE or set KUBECONFIG',
        );
      throw err;
    }
  }
  return config ? kubeconfigCredentials(config) : inClusterCredentials(env, serviceAccountDir);
}
