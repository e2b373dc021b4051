/**
 * A real smart-HTTP Git server for tests and for people trying the product by hand: a small Node
 * HTTP server that runs Debian's `git http-backend` as CGI for every bare repository under a root
 * folder (`http://127.0.0.1:N/<name>.git`, names may contain slashes: `group/name.git`).
 *
 * Clone, fetch, shallow fetch and push all go through the real backend, so the server under test
 * talks to the same protocol code a GitLab host runs. Optionally a token is required (HTTP basic
 * password, `Authorization: Bearer` or `Private-Token`, as GitLab accepts), and the server can be
 * stopped and started again on the same port to test "Git host unreachable".
 */
import { spawn } from 'node:child_process';
import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Where Debian's git installs the CGI program. */
export const GIT_HTTP_BACKEND = '/usr/lib/git-core/git-http-backend';

export interface GitServerOptions {
  /** Folder holding bare repositories (`<root>/group/name.git`). */
  root: string;
  /** Port on 127.0.0.1; 0 (default) lets the OS choose. */
  port?: number;
  /** When set, every request must carry this token (basic password, Bearer or Private-Token). */
  token?: string;
}

export interface GitServer {
  /** `http://127.0.0.1:PORT` with no trailing slash; a repository is `${url}/${name}.git`. */
  readonly url: string;
  readonly port: number;
  readonly root: string;
  /** The token the server requires, if any (for test clients). */
  readonly token?: string;
  /** Stop listening and drop open connections; the port stays reserved for `start()` in practice. */
  stop(): Promise<void>;
  /** Listen again on the same port after `stop()` (to test recovery from an unreachable host). */
  start(): Promise<void>;
}

/** Start the server; resolves once it listens. */
export async function startGitServer(options: GitServerOptions): Promise<GitServer> {
  const { root, token } = options;
  let port = options.port ?? 0;
  let server: http.Server | undefined;

  const listen = async (): Promise<void> => {
    const s = http.createServer((req, res) => {
      if (token !== undefined && !authorized(req, token)) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"', 'Content-Type': 'text/plain' });
        res.end('authentication required\n');
        return;
      }
      serveCgi(root, req, res);
    });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        s.off('error', reject);
        resolve();
      });
    });
    port = (s.address() as AddressInfo).port;
    server = s;
  };

  await listen();
  return {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    root,
    token,
    async stop() {
      const s = server;
      server = undefined;
      if (!s) return;
      await new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      });
    },
    async start() {
      if (server) return;
      await listen();
    },
  };
}

/** Accept the token as a basic-auth password (any user), a Bearer token or a Private-Token header. */
function authorized(req: http.IncomingMessage, token: string): boolean {
  const candidates: string[] = [];
  const auth = req.headers.authorization ?? '';
  const [scheme, value] = auth.split(' ', 2);
  if (scheme?.toLowerCase() === 'basic' && value) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    candidates.push(decoded.slice(decoded.indexOf(':') + 1));
  } else if (scheme?.toLowerCase() === 'bearer' && value) {
    candidates.push(value);
  }
  const privateToken = req.headers['private-token'];
  if (typeof privateToken === 'string') candidates.push(privateToken);
  const want = Buffer.from(token);
  return candidates.some((c) => {
    const got = Buffer.from(c);
    return got.length === want.length && timingSafeEqual(got, want);
  });
}

/** Run git-http-backend for one request: CGI environment in, headers and body out. */
function serveCgi(root: string, req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    GIT_PROJECT_ROOT: root,
    GIT_HTTP_EXPORT_ALL: '1',
    // http-backend only enables receive-pack (push) for an authenticated user.
    REMOTE_USER: 'git',
    REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
    REQUEST_METHOD: req.method ?? 'GET',
    PATH_INFO: decodeURIComponent(url.pathname),
    QUERY_STRING: url.search.replace(/^\?/, ''),
    CONTENT_TYPE: req.headers['content-type'] ?? '',
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_PROTOCOL: 'HTTP/1.1',
  };
  if (req.headers['content-length']) env.CONTENT_LENGTH = req.headers['content-length'];
  if (req.headers['content-encoding']) env.HTTP_CONTENT_ENCODING = req.headers['content-encoding'];
  const proto = req.headers['git-protocol'];
  if (typeof proto === 'string') {
    env.GIT_PROTOCOL = proto;
    env.HTTP_GIT_PROTOCOL = proto;
  }

  const child = spawn(GIT_HTTP_BACKEND, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  req.pipe(child.stdin);
  child.stdin.on('error', () => {}); // the backend may exit before reading everything (errors)

  let head = Buffer.alloc(0);
  let headersSent = false;
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString('utf8');
  });
  child.stdout.on('data', (chunk: Buffer) => {
    if (headersSent) {
      res.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const split = findHeaderEnd(head);
    if (!split) return;
    const headerText = head.subarray(0, split.index).toString('latin1');
    let status = 200;
    let reason: string | undefined;
    for (const line of headerText.split(/\r?\n/)) {
      const colon = line.indexOf(':');
      if (colon < 0) continue;
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === 'status') {
        status = Number.parseInt(value, 10);
        reason = value.slice(String(status).length).trim() || undefined;
      } else {
        res.setHeader(name, value);
      }
    }
    res.writeHead(status, reason);
    headersSent = true;
    const rest = head.subarray(split.index + split.length);
    if (rest.length) res.write(rest);
  });
  child.on('close', (code) => {
    if (!headersSent) {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(`git http-backend failed (exit ${code}): ${stderr}`);
      return;
    }
    res.end();
  });
  child.on('error', (err) => {
    if (!headersSent) {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      headersSent = true;
    }
    res.end(`cannot run ${GIT_HTTP_BACKEND}: ${err.message}`);
  });
}

/** The blank line ending CGI headers: `\r\n\r\n` or `\n\n`, whichever comes first. */
function findHeaderEnd(buf: Buffer): { index: number; length: number } | undefined {
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return { index: crlf, length: 4 };
  if (lf >= 0) return { index: lf, length: 2 };
  return undefined;
}
