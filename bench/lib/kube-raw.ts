/**
 * A minimal Kubernetes API client for the bench's own traffic (baselines, edits, watches): raw
 * `https` on keep-alive connections with the admin client certificate. It is deliberately not the
 * product's client, so the baselines measure the API server, not our code.
 */
import https from 'node:https';
import { nowMs } from './stats.js';

export interface RawCredentials {
  /** `https://127.0.0.1:PORT` */
  server: string;
  caPem: string;
  certPem: string;
  keyPem: string;
}

export interface RawResponse {
  status: number;
  body: unknown;
  /** When the whole response had arrived (see {@link nowMs}). */
  at: number;
}

/** One event from a watch stream, stamped with its arrival time. */
export interface RawWatchEvent {
  type: string;
  object: KubeJson;
  at: number;
}

export type KubeJson = {
  metadata: { name: string; namespace?: string; resourceVersion: string };
  [key: string]: unknown;
};

export class RawKube {
  private readonly agent: https.Agent;
  private readonly base: URL;

  /** `maxSockets` bounds the connections (the create-loop baseline uses 8 requests in flight). */
  constructor(
    private readonly creds: RawCredentials,
    maxSockets = 16,
  ) {
    this.base = new URL(creds.server);
    this.agent = new https.Agent({
      keepAlive: true,
      maxSockets,
      ca: creds.caPem,
      cert: creds.certPem,
      key: creds.keyPem,
    });
  }

  /** One request; non-2xx answers are returned, not thrown. */
  request(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<RawResponse> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload) Object.assign(headers, { 'content-type': contentType, 'content-length': String(payload.length) });
    return new Promise<RawResponse>((resolve, reject) => {
      const req = https.request(new URL(path, this.base), { method, agent: this.agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const at = nowMs();
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            // keep the text (an HTML error page, say)
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, at });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Like {@link request} but throws on a non-2xx answer, naming the request. */
  async ok(method: string, path: string, body?: unknown, contentType?: string): Promise<RawResponse> {
    const res = await this.request(method, path, body, contentType);
    if (res.status < 200 || res.status >= 300)
      throw new Error(`${method} ${path}: HTTP ${res.status}: ${JSON.stringify(res.body).slice(0, 300)}`);
    return res;
  }

  /**
   * Watches a collection from "now" (the resourceVersion of a one-item list), calling `onEvent`
   * for every event as it arrives. Resolves once the stream is open; the returned function stops it.
   * On its own connection (not from the pool), so a long watch never holds a pooled socket.
   */
  async watch(collectionPath: string, onEvent: (e: RawWatchEvent) => void): Promise<() => void> {
    const list = await this.ok('GET', `${collectionPath}?limit=1`);
    const rv = (list.body as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
    const url = new URL(`${collectionPath}?watch=1&resourceVersion=${rv}&allowWatchBookmarks=false`, this.base);
    let stopped = false;
    const req = https.request(url, {
      method: 'GET',
      agent: false,
      ca: this.creds.caPem,
      cert: this.creds.certPem,
      key: this.creds.keyPem,
      headers: { accept: 'application/json' },
    });
    await new Promise<void>((resolve, reject) => {
      req.once('error', (err) => (stopped ? resolve() : reject(err)));
      req.once('response', (res) => {
        if (res.statusCode !== 200) return reject(new Error(`watch ${collectionPath}: HTTP ${res.statusCode}`));
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          const at = nowMs();
          buffered += chunk;
          let nl: number;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, nl);
            buffered = buffered.slice(nl + 1);
            if (!line.trim()) continue;
            const e = JSON.parse(line) as { type: string; object: KubeJson };
            onEvent({ type: e.type, object: e.object, at });
          }
        });
        res.on('error', () => undefined);
        resolve();
      });
      req.end();
    });
    return () => {
      stopped = true;
      req.destroy();
    };
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Numeric order of resourceVersions (etcd revisions; opaque by contract, numeric in practice). */
export function rvAfter(a: string, b: string): boolean {
  return BigInt(a) > BigInt(b);
}
