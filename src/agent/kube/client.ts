/**
 * The agent's only door to the Kubernetes API: raw HTTPS requests over ONE keep-alive agent shared
 * by every request and every watch, with credentials from ./credentials.ts (in-cluster files, a
 * kubeconfig, or a @kubernetes/client-node KubeConfig the caller already has). Owns URL building
 * for a resource, the verbs the reconcile engine needs (get, list, create, RFC 6902 JSON patch,
 * delete with preconditions, watch streams), `fieldManager` on every write, and the typed API
 * errors (NotFound, AlreadyExists, Conflict, Invalid, Forbidden).
 *
 * Why not the generated client: 1.4 makes a new https.Agent (a TLS handshake) per request and
 * cannot send a JSON patch; a raw keep-alive request measured 4-5x faster per sequential GET.
 */
import https from 'node:https';
import http from 'node:http';
import { createSecureContext } from 'node:tls';
import { GitopsError, TransientError } from '../../common/errors.js';
import { objectId } from '../../common/object-id.js';
import type { JsonPatchOp, KubeObject, ResourceInfo } from './types.js';
import { toCredentials, type CredentialSource, type KubeCredentials } from './credentials.js';
import { ProblemCode } from '../../protocol/problems.js';

/** Field manager recorded in managedFields for every write of ours. */
export const DEFAULT_FIELD_MANAGER = 'gitops-agent';

/** A `Status` object as the API server returns it on failures. */
export interface KubeStatus {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { name?: string; kind?: string; causes?: Array<{ reason?: string; message?: string; field?: string }> };
}

/** An API answer that is not 2xx, by HTTP status and `reason`. */
export class KubeApiError extends GitopsError {
  readonly status: number;
  readonly reason: string;
  readonly details: KubeStatus;
  constructor(kind: 'user' | 'retryable' | 'transient', code: string, id: string, status: number, body: KubeStatus) {
    // A generic message ("the server rejected our request...") carries the real reason in its causes.
    const causes = (body.details?.causes ?? [])
      .map((c) => c.message)
      .filter((m): m is string => !!m && !(body.message ?? '').includes(m));
    const what = `${body.message ?? `HTTP ${status}`}${causes.length ? `: ${causes.join('; ')}` : ''}`;
    super(kind, code, `${id}: ${what}`, { data: { object: id, status, reason: body.reason ?? '' } });
    this.status = status;
    this.reason = body.reason ?? '';
    this.details = body;
  }
}
export class NotFoundError extends KubeApiError {}
export class AlreadyExistsError extends KubeApiError {}
/** 409 Conflict other than AlreadyExists (stale resourceVersion on update). */
export class ConflictError extends KubeApiError {}
/** 422: validation failed, an immutable field changed, or a JSON-patch `test` op failed. */
export class InvalidError extends KubeApiError {
  /** True when the failure is our optimistic-lock `test` op: treat like a conflict and re-plan. */
  get isTestFailure(): boolean {
    // The API server answers a failed `test` with a bare 422 "rejected our request" and no causes.
    const bare =
      /rejected our request due to an error in our request/.test(this.details.message ?? '') &&
      !this.details.details?.causes?.length &&
      !this.details.details?.name;
    return bare || /testing value|test operation/i.test(this.message);
  }
  /** True when an immutable field would change. */
  get isImmutable(): boolean {
    return /field is immutable|immutable/i.test(this.message);
  }
}
export class ForbiddenError extends KubeApiError {}

function toError(id: string, status: number, body: KubeStatus): KubeApiError {
  switch (status) {
    case 404:
      return new NotFoundError('user', ProblemCode.KUBE_NOT_FOUND, id, status, body);
    case 409:
      return body.reason === 'AlreadyExists'
        ? new AlreadyExistsError('retryable', ProblemCode.KUBE_ALREADY_EXISTS, id, status, body)
        : new ConflictError('retryable', ProblemCode.KUBE_CONFLICT, id, status, body);
    case 422:
      return new InvalidError('user', ProblemCode.KUBE_INVALID, id, status, body);
    case 400:
      return new KubeApiError('user', ProblemCode.KUBE_BAD_REQUEST, id, status, body);
    case 401:
      return new KubeApiError('retryable', ProblemCode.KUBE_UNAUTHORIZED, id, status, body);
    case 403:
      return new ForbiddenError('user', ProblemCode.KUBE_FORBIDDEN, id, status, body);
    case 410:
      return new KubeApiError('retryable', ProblemCode.KUBE_GONE, id, status, body);
    case 429:
      return new KubeApiError('transient', ProblemCode.KUBE_TOO_MANY_REQUESTS, id, status, body);
    default:
      return new KubeApiError(status >= 500 ? 'transient' : 'user', ProblemCode.KUBE_ERROR, id, status, body);
  }
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  accept?: string;
  /** Object id (or URL) first in error messages. */
  id?: string;
  signal?: AbortSignal;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
}

export interface WriteOptions {
  dryRun?: boolean;
  signal?: AbortSignal;
}

export interface DeleteOptions extends WriteOptions {
  /** UID precondition: never delete a newer object with the same name. */
  uid?: string;
  propagationPolicy?: 'Foreground' | 'Background' | 'Orphan';
}

/** One watch event as the API server streams it. */
export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: KubeObject & KubeStatus;
}

export interface WatchHandle {
  /** Resolves when the stream ends (server closed it, error, or abort); never rejects. */
  done: Promise<{ error?: Error }>;
  abort(): void;
}

/** URL path of a collection (`/apis/apps/v1/namespaces/x/deployments`) or an object. */
export function resourcePath(info: ResourceInfo, namespace?: string, name?: string): string {
  const base = info.group === '' ? `/api/${info.version}` : `/apis/${info.group}/${info.version}`;
  const ns = info.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${base}${ns}/${info.plural}${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;
}

function queryString(query: RequestOptions['query']): string {
  if (!query) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query)) if (v !== undefined) parts.push(`${k}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

export interface KubeClientOptions {
  fieldManager?: string;
  /** Per-request timeout in ms (not for watches). Default 30 s. */
  timeoutMs?: number;
}

/**
 * Thin Kubernetes client. Create with `KubeClient.create(credentials)`; call `close()` to free sockets.
 */
export class KubeClient {
  readonly fieldManager: string;
  readonly server: URL;
  private readonly agent: https.Agent | http.Agent;
  private readonly credentials: KubeCredentials;
  private readonly timeoutMs: number;

  private constructor(credentials: KubeCredentials, agent: https.Agent | http.Agent, options: KubeClientOptions) {
    this.credentials = credentials;
    this.server = credentials.server;
    this.agent = agent;
    this.fieldManager = options.fieldManager ?? DEFAULT_FIELD_MANAGER;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /**
   * Builds the one shared keep-alive agent from the credentials' TLS material (a client-node
   * KubeConfig is accepted too and asked through `applyToHTTPSOptions`).
   */
  static async create(source: CredentialSource, options: KubeClientOptions = {}): Promise<KubeClient> {
    const credentials = await toCredentials(source);
    const { tls, server } = credentials;
    const agent =
      server.protocol === 'http:'
        ? new http.Agent({ keepAlive: true, maxFreeSockets: 64 })
        : new https.Agent({
            keepAlive: true,
            keepAliveMsecs: 30_000,
            maxFreeSockets: 64,
            // One TLS context for every connection: without it each new socket builds its own from
            // the PEMs (an OpenSSL context per connection: memory and CPU for nothing).
            secureContext: createSecureContext({ ca: tls.ca, cert: tls.cert, key: tls.key }),
            ...(tls.servername ? { servername: tls.servername } : {}),
            ...(tls.rejectUnauthorized !== undefined ? { rejectUnauthorized: tls.rejectUnauthorized } : {}),
          });
    // Fail at start-up, not at the first request, when a token file cannot be read.
    await credentials.authHeaders();
    return new KubeClient(credentials, agent, options);
  }

  private auth(refresh = false): Promise<Record<string, string>> {
    return this.credentials.authHeaders(refresh);
  }

  /** One request; JSON in and out. Throws KubeApiError subclasses on non-2xx answers. */
  async request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    let retriedAuth = false;
    for (;;) {
      const headers = await this.auth();
      try {
        return await this.send<T>(method, path, options, headers);
      } catch (err) {
        // A rotated token: read the credentials again, once.
        if (!retriedAuth && err instanceof KubeApiError && err.status === 401) {
          retriedAuth = true;
          await this.auth(true);
          continue;
        }
        throw err;
      }
    }
  }

  private send<T>(method: string, path: string, options: RequestOptions, auth: Record<string, string>): Promise<T> {
    const body = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const id = options.id ?? `${method} ${path}`;
    return new Promise<T>((resolve, reject) => {
      const req = this.open(
        method,
        `${path}${queryString(options.query)}`,
        {
          ...auth,
          Accept: options.accept ?? 'application/json',
          ...(body ? { 'Content-Type': options.contentType ?? 'application/json', 'Content-Length': body.length } : {}),
        },
        { signal: options.signal, timeout: this.timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (e) =>
            reject(new TransientError(ProblemCode.KUBE_CONNECTION, `${id}: ${e.message}`, { cause: e })),
          );
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            let parsed: unknown = undefined;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              parsed = { message: text.slice(0, 200) };
            }
            if (status >= 200 && status < 300) resolve(parsed as T);
            else reject(toError(id, status, (parsed ?? {}) as KubeStatus));
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`timed out after ${this.timeoutMs} ms`)));
      req.on('error', (e) =>
        reject(
          e instanceof GitopsError
            ? e
            : new TransientError(ProblemCode.KUBE_CONNECTION, `${id}: ${e.message}`, { cause: e }),
        ),
      );
      req.end(body);
    });
  }

  /** A request to the API server over the shared agent; `pathAndQuery` is relative to the server URL. */
  private open(
    method: string,
    pathAndQuery: string,
    headers: http.OutgoingHttpHeaders,
    extra: { signal?: AbortSignal; timeout?: number },
    onResponse: (res: http.IncomingMessage) => void,
  ): http.ClientRequest {
    const mod = this.server.protocol === 'http:' ? http : https;
    return mod.request(
      {
        protocol: this.server.protocol,
        hostname: this.server.hostname,
        port: this.server.port,
        method,
        path: `${this.server.pathname.replace(/\/$/, '')}${pathAndQuery}`,
        agent: this.agent,
        headers,
        ...extra,
      },
      onResponse,
    );
  }

  async get(
    info: ResourceInfo,
    namespace: string | undefined,
    name: string,
    signal?: AbortSignal,
  ): Promise<KubeObject> {
    const obj = await this.request<KubeObject>('GET', resourcePath(info, namespace, name), {
      id: objectId({ kind: info.kind, namespace, name }),
      signal,
    });
    return withTypeMeta(obj, info);
  }

  /** Lists a resource type (all namespaces when `namespace` is absent); items get apiVersion/kind back. */
  async list(
    info: ResourceInfo,
    options: { namespace?: string; labelSelector?: string; signal?: AbortSignal } = {},
  ): Promise<ListResult> {
    const res = await this.request<{ items?: KubeObject[]; metadata?: { resourceVersion?: string } }>(
      'GET',
      resourcePath(info, options.namespace),
      {
        query: { labelSelector: options.labelSelector },
        id: `${info.kind} list`,
        signal: options.signal,
      },
    );
    return {
      items: (res.items ?? []).map((o) => withTypeMeta(o, info)),
      resourceVersion: res.metadata?.resourceVersion ?? '',
    };
  }

  async create(info: ResourceInfo, obj: KubeObject, options: WriteOptions = {}): Promise<KubeObject> {
    const ns = obj.metadata.namespace;
    const res = await this.request<KubeObject>('POST', resourcePath(info, ns), {
      query: { fieldManager: this.fieldManager, dryRun: options.dryRun ? 'All' : undefined },
      body: obj,
      id: objectId({ kind: info.kind, namespace: ns, name: obj.metadata.name }),
      signal: options.signal,
    });
    return withTypeMeta(res, info);
  }

  /** RFC 6902 JSON patch (`application/json-patch+json`, body = the operations). */
  async jsonPatch(
    info: ResourceInfo,
    namespace: string | undefined,
    name: string,
    ops: JsonPatchOp[],
    options: WriteOptions = {},
  ): Promise<KubeObject> {
    const res = await this.request<KubeObject>('PATCH', resourcePath(info, namespace, name), {
      query: { fieldManager: this.fieldManager, dryRun: options.dryRun ? 'All' : undefined },
      body: ops,
      contentType: 'application/json-patch+json',
      id: objectId({ kind: info.kind, namespace, name }),
      signal: options.signal,
    });
    return withTypeMeta(res, info);
  }

  async delete(
    info: ResourceInfo,
    namespace: string | undefined,
    name: string,
    options: DeleteOptions = {},
  ): Promise<KubeObject | KubeStatus> {
    const body: Record<string, unknown> = { apiVersion: 'v1', kind: 'DeleteOptions' };
    if (options.uid) body.preconditions = { uid: options.uid };
    if (options.propagationPolicy) body.propagationPolicy = options.propagationPolicy;
    if (options.dryRun) body.dryRun = ['All'];
    return this.request('DELETE', resourcePath(info, namespace, name), {
      body,
      id: objectId({ kind: info.kind, namespace, name }),
      signal: options.signal,
    });
  }

  /**
   * Streams watch events of a collection from `resourceVersion`, with bookmarks. The handle's
   * `done` resolves when the stream ends for any reason; the caller decides whether to re-watch.
   */
  watch(
    info: ResourceInfo,
    options: { namespace?: string; labelSelector?: string; resourceVersion: string; timeoutSeconds?: number },
    onEvent: (e: WatchEvent) => void,
  ): WatchHandle {
    const controller = new AbortController();
    const path = resourcePath(info, options.namespace);
    const query = queryString({
      watch: 1,
      allowWatchBookmarks: true,
      resourceVersion: options.resourceVersion,
      labelSelector: options.labelSelector,
      timeoutSeconds: options.timeoutSeconds ?? 300 + Math.floor(Math.random() * 60),
    });
    const done = (async (): Promise<{ error?: Error }> => {
      const headers = await this.auth();
      return new Promise<{ error?: Error }>((resolve) => {
        let failure: Error | undefined;
        const req = this.open(
          'GET',
          `${path}${query}`,
          { ...headers, Accept: 'application/json' },
          { signal: controller.signal },
          (res) => {
            if ((res.statusCode ?? 0) >= 300) {
              const chunks: Buffer[] = [];
              res.on('data', (c: Buffer) => chunks.push(c));
              res.on('end', () => {
                let body: KubeStatus = {};
                try {
                  body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as KubeStatus;
                } catch {
                  /* not JSON: keep the status code only */
                }
                resolve({ error: toError(`${info.kind} watch`, res.statusCode ?? 0, body) });
              });
              res.on('error', (e) => resolve({ error: e }));
              return;
            }
            let buf = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => {
              buf += chunk;
              // Walk the lines with an offset and cut the remainder once per chunk: slicing the
              // buffer per line is quadratic when one chunk carries many events (a re-list burst).
              let start = 0;
              for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n', start)) {
                const line = buf.slice(start, nl);
                start = nl + 1;
                if (!line.trim()) continue;
                try {
                  const ev = JSON.parse(line) as WatchEvent;
                  if (ev.type !== 'ERROR' && ev.type !== 'BOOKMARK')
                    ev.object = withTypeMeta(ev.object, info) as WatchEvent['object'];
                  onEvent(ev);
                } catch (e) {
                  // A bad line or an ERROR event (410 Gone): end this stream and report why.
                  failure = e as Error;
                  buf = '';
                  req.destroy();
                  return;
                }
              }
              buf = buf.slice(start);
            });
            res.on('end', () => resolve(failure ? { error: failure } : {}));
            res.on('error', (e) => resolve({ error: failure ?? e }));
            res.on('close', () => resolve(failure ? { error: failure } : {}));
          },
        );
        req.on('error', (e) => resolve(controller.signal.aborted ? {} : { error: failure ?? e }));
        req.end();
      });
    })();
    return { done, abort: () => controller.abort() };
  }

  /** Frees the shared sockets. */
  close(): void {
    this.agent.destroy();
  }
}

/** List items and watch objects come without apiVersion/kind; put them back. */
export function withTypeMeta(obj: KubeObject, info: ResourceInfo): KubeObject {
  if (!obj || typeof obj !== 'object') return obj;
  if (!obj.kind) obj.kind = info.kind;
  if (!obj.apiVersion) obj.apiVersion = info.group ? `${info.group}/${info.version}` : info.version;
  return obj;
}

/** True for errors where retrying soon can help (network, 5xx, 429). */
export function isTransient(err: unknown): boolean {
  return err instanceof TransientError || (err instanceof KubeApiError && (err.status >= 500 || err.status === 429));
}
