/**
 * The HTTP client isomorphic-git talks through: Node's http/https with one keep-alive agent per
 * Git source (connection reuse across polls of many projects on one host, and a cap on concurrent
 * connections) and a timeout, so a Git host that accepts a connection and then hangs cannot stall
 * a project's watch for ever. isomorphic-git's own node client has neither.
 */
import http from 'node:http';
import https from 'node:https';
import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';
import { TransientError } from '../../common/errors.js';

export interface GitHttpOptions {
  /** Socket idle timeout per request (default 30 s). */
  timeoutMs?: number;
  /** Most connections open to Git hosts at once (default 16). */
  maxSockets?: number;
}

/** A keep-alive client; call `close()` to drop idle connections. */
export function createGitHttpClient(options: GitHttpOptions = {}): HttpClient & { close(): void } {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 16, maxFreeSockets: 8 };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);

  async function request(req: GitHttpRequest): Promise<GitHttpResponse> {
    const url = new URL(req.url);
    const body: Buffer[] = [];
    if (req.body) for await (const chunk of req.body) body.push(Buffer.from(chunk));
    const payload = Buffer.concat(body);
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise<GitHttpResponse>((resolve, reject) => {
      const r = mod.request(
        url,
        {
          method: req.method ?? 'GET',
          headers: { ...req.headers, ...(payload.length ? { 'content-length': String(payload.length) } : {}) },
          agent: url.protocol === 'https:' ? httpsAgent : httpAgent,
        },
        (res) => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers))
            if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
          resolve({
            url: req.url,
            method: req.method,
            statusCode: res.statusCode ?? 0,
            statusMessage: res.statusMessage ?? '',
            headers,
            body: res[Symbol.asyncIterator]() as AsyncIterableIterator<Uint8Array>,
          });
        },
      );
      r.setTimeout(timeoutMs, () => {
        r.destroy(new TransientError('GIT_TIMEOUT', `no answer from ${url.host} within ${timeoutMs} ms`));
      });
      r.on('error', reject);
      r.end(payload.length ? payload : undefined);
    });
  }

  return {
    request,
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
