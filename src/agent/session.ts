/**
 * The agent's WebSocket session with gitops-server: one connection at a time, authenticated in
 * the HTTP upgrade with a fresh short-lived JWT per attempt (the token never crosses the wire),
 * `hello` with the commits the agent already has, every incoming frame validated, heartbeats both
 * ways, and reconnects with capped exponential backoff and full jitter.
 *
 * How each ending is handled (one clear log line each):
 * - 401/403 at the upgrade or close UNAUTHORIZED: the token is wrong or revoked; retry slowly
 *   (UNAUTHORIZED_BACKOFF) because only a person can fix it.
 * - close REVOKED: the server says this agent was revoked. The session stops for good: no more
 *   connection attempts (a new token means a new Secret and a restart). The rest of the agent
 *   keeps enforcing the last desired state from the state dir: revocation takes the agent off the
 *   control plane, it does not tear the cluster down.
 * - close VERSION_MISMATCH: the server does not speak our protocol version. Against a server older
 *   than health (it speaks only 1) the agent reconnects at once speaking version 1 and says so in
 *   one log line; it tries 2 again after the server goes away (GOING_AWAY: it may come back
 *   upgraded). A mismatch while speaking 1: retry slowly (upgrade the agent or the server).
 * - close SESSION_REPLACED: the server allows a few sessions per agent and closed this, the
 *   oldest; normal backoff (a warning: a copy of the token may be in use elsewhere).
 * - anything else (network loss, server restart, INVALID_MESSAGE, 1009): normal backoff.
 * The attempt counter resets once the server has sent a valid message.
 *
 * `status` and `drift` reports are sent at once when connected and buffered (bounded, oldest
 * dropped; only the newest status per project kept) while disconnected. `health` frames (version
 * 2) go only to a server that said it speaks 2 (`protocolVersion` in its first `config` frame):
 * they wait, newest per project, until that frame (or a connection) comes, and are dropped with a
 * debug line when the server speaks 1 (it would close the session for them). Each is first fitted to
 * the server's inbound limits (`fitReport`: at most MAX_AGENT_MESSAGE_BYTES, every string and
 * list bounded); a report that had to be cut says so in its `truncated` field and in one log line.
 * Reports sent before the server answered a connection are sent again on the next one when it
 * refused the hello (VERSION_MISMATCH: it read none of them). A status change's `code` (version
 * 2) is left out on a connection whose hello said 1.
 * Frames from the server (desired state) may be up to MAX_MESSAGE_BYTES.
 */
import { WebSocket, type RawData } from 'ws';
import type { IncomingMessage, ClientRequest } from 'node:http';
import type { Logger } from '../common/logger.js';
import { errorMessage } from '../common/errors.js';
import {
  CloseCode,
  MAX_AGENT_MESSAGE_BYTES,
  MAX_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  decodeServerMessage,
  encodeMessage,
  fitReport,
  statusForVersion1,
  type ConfigMessage,
  type DesiredMessage,
  type DriftMessage,
  type ErrorMessage,
  type HealthMessage,
  type HelloMessage,
  type StatusMessage,
} from '../protocol/messages.js';
import { BINARY_FRAME_REASON, decodeFrame } from '../protocol/frames.js';
import { RECONNECT_BACKOFF, UNAUTHORIZED_BACKOFF, backoffDelay, type BackoffPolicy } from './backoff.js';
import type { ConnectionState } from './metrics.js';

/** What the agent reports; `health` only reaches a server that speaks version 2. */
export type Report = StatusMessage | DriftMessage | HealthMessage;

/** The version a server speaks when its first config frame names none. */
const FIRST_PROTOCOL_VERSION = 1;

export interface SessionHandlers {
  onConfig(message: ConfigMessage): void | Promise<void>;
  onDesired(message: DesiredMessage): void | Promise<void>;
  onError(message: ErrorMessage): void | Promise<void>;
}

export interface SessionOptions extends SessionHandlers {
  /** `wss://host/api/v1/agent/connect` (`ws://` only when `allowInsecure`). */
  url: string;
  /** Signs a fresh JWT for one connection attempt. */
  signJwt: () => Promise<string>;
  /** Extra CA certificates (PEM) to trust for the server. */
  ca?: string | Buffer;
  agentVersion: string;
  /** Commit and digest per manifest project the agent has (for hello). */
  applied: () => HelloMessage['applied'];
  logger: Logger;
  onState?: (state: ConnectionState) => void;
  /** Our ping interval (default 20 s). */
  pingIntervalMs?: number;
  /** Silence (no ping, pong or message from the server) after which the connection is dead (default 65 s). */
  deadAfterMs?: number;
  /** Reports kept while disconnected (default 500). */
  bufferLimit?: number;
  reconnect?: BackoffPolicy;
  slowReconnect?: BackoffPolicy;
  /** Time allowed for the TCP+TLS+HTTP upgrade (default 15 s). */
  handshakeTimeoutMs?: number;
  onDropped?: () => void;
  random?: () => number;
  /** Largest report frame (default MAX_AGENT_MESSAGE_BYTES, what the server accepts). */
  maxReportBytes?: number;
}

/** How one connection attempt ended. */
type Ending =
  | { kind: 'http'; status: number }
  | { kind: 'closed'; code: number; reason: string; opened: boolean }
  | { kind: 'error'; message: string; opened: boolean };

export class Session {
  private readonly opts: SessionOptions;
  private ws?: WebSocket;
  private state: ConnectionState = 'disconnected';
  private stopped = false;
  private attempt = 0;
  private retryTimer?: NodeJS.Timeout;
  private wake?: () => void;
  private loop?: Promise<void>;
  private readonly buffer: Report[] = [];
  /** The version hello says: PROTOCOL_VERSION, or 1 after an older server refused it. */
  private speaking = PROTOCOL_VERSION;
  /** The fallback to version 1 was logged (once per process; later ones at debug). */
  private fellBackLogged = false;
  /** What this connection's server speaks: unknown until its first config frame. */
  private serverVersion?: number;
  /** The server sent this connection a valid message (so it took our hello). */
  private heard = false;
  /** Reports sent on this connection before the server answered it (see transmit). */
  private unanswered: Report[] = [];
  /** Server messages are handled one after another, in the order received. */
  private inbox: Promise<void> = Promise.resolve();

  constructor(options: SessionOptions) {
    this.opts = options;
  }

  /** Starts connecting (and reconnecting) in the background. */
  start(): void {
    if (this.loop) return;
    this.loop = this.run().catch((err: unknown) => {
      this.opts.logger.error({ err: errorMessage(err) }, 'session loop failed');
    });
  }

  get connectionState(): ConnectionState {
    return this.state;
  }

  get connected(): boolean {
    return this.state === 'connected';
  }

  /** The version the connected server speaks: undefined until its first config frame. */
  get serverProtocolVersion(): number | undefined {
    return this.serverVersion;
  }

  /**
   * Sends a report now, or buffers it until the next connection. A `health` frame is sent only
   * to a server that speaks version 2, kept (newest per project) until the server's version is
   * known, and dropped for a version-1 server. Never throws.
   */
  send(full: Report): void {
    const report = fitReport(full, this.opts.maxReportBytes ?? MAX_AGENT_MESSAGE_BYTES);
    if (report.truncated) this.logCut(report);
    const ws = this.ws;
    const verdict = this.sendable(report);
    if (ws && ws.readyState === WebSocket.OPEN && this.state === 'connected' && verdict !== 'wait') {
      if (verdict === 'send') this.transmit(ws, report);
      else if (report.type === 'health') this.dropHealth(report);
      return;
    }
    if (report.type === 'status' || report.type === 'health') {
      // Only the newest of a project matters: an older one would only say what no longer holds.
      const old = this.buffer.findIndex((r) => r.type === report.type && r.project === report.project);
      if (old >= 0) this.buffer.splice(old, 1);
    }
    this.buffer.push(report);
    const limit = this.opts.bufferLimit ?? 500;
    while (this.buffer.length > limit) {
      this.buffer.shift();
      this.opts.onDropped?.();
    }
  }

  /** Reports waiting for a connection (tests). */
  get buffered(): number {
    return this.buffer.length;
  }

  /**
   * Sends a report, remembering it until the server has answered this connection: a server that
   * refuses our hello (VERSION_MISMATCH) has read none of what followed it.
   */
  private transmit(ws: WebSocket, report: Report): void {
    ws.send(this.encode(report));
    if (this.heard) return;
    this.unanswered.push(report);
    // A server that never says anything (no config yet) must not make this grow without bound.
    if (this.unanswered.length > (this.opts.bufferLimit ?? 500)) this.unanswered.shift();
  }

  /** Puts back what an unanswered connection was sent, unless a newer report of its project waits. */
  private requeue(): void {
    const newer = (r: Report): boolean =>
      (r.type === 'status' || r.type === 'health') &&
      this.buffer.some((b) => b.type === r.type && b.project === r.project);
    this.buffer.unshift(...this.unanswered.filter((r) => !newer(r)));
    this.unanswered = [];
    const limit = this.opts.bufferLimit ?? 500;
    while (this.buffer.length > limit) {
      this.buffer.shift();
      this.opts.onDropped?.();
    }
  }

  /** A report in the version this connection's hello said (a v1 server refuses a change's `code`). */
  private encode(report: Report): string {
    return encodeMessage(report.type === 'status' && this.speaking < 2 ? statusForVersion1(report) : report);
  }

  /** Whether a report can go to this connection now, must wait for the server's version, or is dropped. */
  private sendable(report: Report): 'send' | 'wait' | 'drop' {
    if (report.type !== 'health') return 'send';
    if (this.serverVersion === undefined) return 'wait';
    return this.serverVersion >= 2 ? 'send' : 'drop';
  }

  private dropHealth(report: HealthMessage): void {
    this.opts.logger.debug(
      {
        project: report.project,
        commit: report.commit,
        result: report.result,
        serverProtocolVersion: this.serverVersion,
      },
      'health not sent: the server speaks protocol 1 (upgrade it to see health)',
    );
  }

  private logCut(report: Report): void {
    const sizes =
      report.type === 'status'
        ? { objects: report.truncated?.changes, listed: report.changes.length }
        : report.type === 'health'
          ? { objects: report.truncated?.objects, listed: report.objects.length }
          : { patchOps: report.truncated?.patchOps, listed: report.patch.length };
    this.opts.logger.warn(
      { type: report.type, project: report.project, ...sizes },
      'report too big for the server: sending a shortened one with the totals',
    );
  }

  /** Closes the connection (1000) and stops reconnecting. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.wake?.();
    const ws = this.ws;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
      ws.close(CloseCode.NORMAL, 'agent stopping');
      const timer = setTimeout(() => ws.terminate(), 2000);
      await closed;
      clearTimeout(timer);
    }
    await this.loop;
    this.setState('stopped');
  }

  private setState(state: ConnectionState): void {
    if (this.state === state) return;
    this.state = state;
    this.opts.onState?.(state);
  }

  private async run(): Promise<void> {
    const log = this.opts.logger;
    while (!this.stopped) {
      this.setState('connecting');
      const ending = await this.connectOnce();
      if (this.stopped) break;
      const next = this.judge(ending);
      if (next === 'stop') {
        this.setState('revoked');
        return;
      }
      this.setState(next === 'slow' ? 'unauthorized' : 'disconnected');
      if (next === 'now') continue;
      const delay = backoffDelay(
        next === 'slow'
          ? (this.opts.slowReconnect ?? UNAUTHORIZED_BACKOFF)
          : (this.opts.reconnect ?? RECONNECT_BACKOFF),
        this.attempt++,
        this.opts.random,
      );
      log.debug({ retryInMs: delay, attempt: this.attempt }, 'reconnecting');
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.retryTimer = setTimeout(resolve, delay);
      });
    }
  }

  /** Logs how a connection ended and decides what comes next. */
  private judge(ending: Ending): 'now' | 'retry' | 'slow' | 'stop' {
    const log = this.opts.logger;
    const server = redactUrl(this.opts.url);
    // A server going away may come back upgraded: ask for the newest version again.
    if (ending.kind === 'closed' && ending.code === CloseCode.GOING_AWAY) this.speaking = PROTOCOL_VERSION;
    if (ending.kind === 'http') {
      if (ending.status === 401 || ending.status === 403) {
        log.error(
          { server, status: ending.status },
          'server refused the agent token (unknown, revoked or wrong audience): check the token Secret; retrying slowly',
        );
        return 'slow';
      }
      log.warn({ server, status: ending.status }, 'server refused the connection');
      return ending.status === 429 ? 'slow' : 'retry';
    }
    if (ending.kind === 'error') {
      log.warn({ server, err: ending.message }, ending.opened ? 'connection to server lost' : 'cannot reach server');
      return 'retry';
    }
    switch (ending.code) {
      case CloseCode.REVOKED:
        log.error(
          { server, code: ending.code },
          'agent revoked by the server: not reconnecting; the last desired state stays enforced; create a new agent token and restart to reconnect',
        );
        return 'stop';
      case CloseCode.UNAUTHORIZED:
        log.error(
          { server, code: ending.code, reason: ending.reason },
          'server refused the agent token: retrying slowly',
        );
        return 'slow';
      case CloseCode.VERSION_MISMATCH:
        this.requeue();
        if (this.speaking > FIRST_PROTOCOL_VERSION) {
          // A server from before version 2: it speaks 1, which every agent still speaks.
          const fields = { server, reason: ending.reason, tried: this.speaking, speaking: FIRST_PROTOCOL_VERSION };
          const text =
            'server speaks an older protocol: reconnecting with version 1 (health is not reported until the server is upgraded)';
          if (this.fellBackLogged) log.debug(fields, text);
          else log.warn(fields, text);
          this.fellBackLogged = true;
          this.speaking = FIRST_PROTOCOL_VERSION;
          return 'now';
        }
        log.error(
          { server, code: ending.code, reason: ending.reason, protocolVersion: this.speaking },
          'protocol version mismatch with the server: upgrade the agent or the server; retrying slowly',
        );
        // The next attempt asks for the newest version again (the server may have been upgraded).
        this.speaking = PROTOCOL_VERSION;
        return 'slow';
      case CloseCode.INVALID_MESSAGE:
        log.error({ server, code: ending.code, reason: ending.reason }, 'server rejected a message from this agent');
        return 'retry';
      case CloseCode.SESSION_REPLACED:
        log.warn(
          { server, code: ending.code, reason: ending.reason },
          'server closed this session for a newer one of the same agent (more sessions than it allows: other replicas, or a copy of this token in use elsewhere)',
        );
        return 'retry';
      case CloseCode.MESSAGE_TOO_BIG:
        log.error({ server, code: ending.code, reason: ending.reason }, 'message too big for the connection');
        return 'retry';
      default:
        log.warn(
          { server, code: ending.code, reason: ending.reason },
          ending.opened ? 'disconnected from server' : 'cannot reach server',
        );
        return 'retry';
    }
  }

  private async connectOnce(): Promise<Ending> {
    let jwt: string;
    try {
      jwt = await this.opts.signJwt();
    } catch (err) {
      return { kind: 'error', message: `cannot sign a JWT: ${errorMessage(err)}`, opened: false };
    }
    // stop() may have come while signing: it found no socket to close, so none may open now.
    if (this.stopped) return { kind: 'closed', code: CloseCode.NORMAL, reason: 'agent stopping', opened: false };
    return new Promise<Ending>((resolve) => {
      let opened = false;
      let settled = false;
      let lastHeard = Date.now();
      let pinger: NodeJS.Timeout | undefined;
      const finish = (ending: Ending): void => {
        if (settled) return;
        settled = true;
        clearInterval(pinger);
        this.ws = undefined;
        this.serverVersion = undefined;
        resolve(ending);
      };
      this.serverVersion = undefined;
      this.heard = false;
      this.unanswered = [];
      const ws = new WebSocket(this.opts.url, {
        headers: { authorization: `Bearer ${jwt}` },
        ca: this.opts.ca,
        maxPayload: MAX_MESSAGE_BYTES,
        handshakeTimeout: this.opts.handshakeTimeoutMs ?? 15_000,
        perMessageDeflate: false,
        followRedirects: false,
      });
      this.ws = ws;
      ws.on('unexpected-response', (req: ClientRequest, res: IncomingMessage) => {
        res.resume();
        req.destroy();
        finish({ kind: 'http', status: res.statusCode ?? 0 });
      });
      ws.on('open', () => {
        opened = true;
        lastHeard = Date.now();
        this.opts.logger.info({ server: redactUrl(this.opts.url) }, 'connected to server');
        const hello: HelloMessage = {
          type: 'hello',
          protocolVersion: this.speaking,
          agentVersion: this.opts.agentVersion,
          applied: this.opts.applied(),
        };
        ws.send(encodeMessage(hello));
        this.setState('connected');
        this.flush(ws);
        const interval = this.opts.pingIntervalMs ?? 20_000;
        const deadAfter = this.opts.deadAfterMs ?? 65_000;
        pinger = setInterval(
          () => {
            if (Date.now() - lastHeard > deadAfter) {
              this.opts.logger.warn(
                { silentMs: Date.now() - lastHeard },
                'server stopped answering heartbeats: dropping the connection',
              );
              ws.terminate();
              return;
            }
            if (ws.readyState === WebSocket.OPEN) ws.ping();
          },
          Math.min(interval, deadAfter / 2),
        );
        pinger.unref();
      });
      ws.on('ping', () => {
        lastHeard = Date.now();
      });
      ws.on('pong', () => {
        lastHeard = Date.now();
      });
      ws.on('message', (data: RawData, isBinary: boolean) => {
        lastHeard = Date.now();
        this.onFrame(ws, data, isBinary);
      });
      ws.on('error', (err: Error) => {
        // 'close' follows for an open socket; a failed handshake may end here alone.
        if (!opened) finish({ kind: 'error', message: err.message, opened });
        else this.opts.logger.debug({ err: err.message }, 'websocket error');
      });
      ws.on('close', (code: number, reason: Buffer) =>
        finish({ kind: 'closed', code, reason: reason.toString('utf8').slice(0, 200), opened }),
      );
    });
  }

  /** Sends what the buffer holds that may go now, in order; health waits for the server's version. */
  private flush(ws: WebSocket): void {
    const kept: Report[] = [];
    while (this.buffer.length > 0 && ws.readyState === WebSocket.OPEN) {
      const report = this.buffer.shift()!;
      const verdict = this.sendable(report);
      if (verdict === 'send') this.transmit(ws, report);
      else if (verdict === 'wait') kept.push(report);
      else if (report.type === 'health') this.dropHealth(report);
    }
    this.buffer.unshift(...kept);
  }

  /** The first config frame of a connection says what the server speaks (absent: version 1). */
  private learnVersion(ws: WebSocket, message: ConfigMessage): void {
    if (this.serverVersion !== undefined) return;
    // A v1 session never hears of 2, whatever a config says.
    this.serverVersion = Math.min(message.protocolVersion ?? FIRST_PROTOCOL_VERSION, this.speaking);
    this.opts.logger.debug({ serverProtocolVersion: this.serverVersion }, 'server protocol version');
    this.flush(ws);
  }

  private onFrame(ws: WebSocket, data: RawData, isBinary: boolean): void {
    const log = this.opts.logger;
    const decoded = decodeFrame(data, isBinary, decodeServerMessage);
    if (!decoded.ok && decoded.kind === 'binary') {
      log.error({}, 'server sent a binary frame: closing');
      ws.close(CloseCode.INVALID_MESSAGE, BINARY_FRAME_REASON);
      return;
    }
    if (!decoded.ok) {
      log.error({ problem: decoded.error.slice(0, 500) }, 'server sent an invalid message: closing');
      ws.close(CloseCode.INVALID_MESSAGE, 'invalid message');
      return;
    }
    this.attempt = 0;
    this.heard = true;
    this.unanswered = [];
    const message = decoded.message;
    if (message.type === 'config') this.learnVersion(ws, message);
    const handle = async (): Promise<void> => {
      switch (message.type) {
        case 'config':
          return this.opts.onConfig(message);
        case 'desired':
          return this.opts.onDesired(message);
        case 'error':
          return this.opts.onError(message);
      }
    };
    this.inbox = this.inbox
      .then(handle)
      .catch((err: unknown) =>
        log.error({ type: message.type, err: errorMessage(err) }, 'handling a server message failed'),
      );
  }
}

/** The URL without credentials or query, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid url)';
  }
}
