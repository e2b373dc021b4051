/**
 * The WebSocket hub: authenticates agents in the HTTP upgrade (before any frame), keeps their
 * sessions, validates every frame, and sends each session `config`, `error` and `desired` messages.
 *
 * - Authentication: a flat list of guard clauses in `handleUpgrade`, every failure ending in one
 *   `abortHandshake` (bare 401/404/429, reason in the log and metrics, never the JWT). Failed
 *   attempts are counted per source address and refused with 429 above a limit.
 * - Sessions: several per agent (two replicas); a revoked agent's sessions close with REVOKED.
 * - Frames: the first must be `hello` with our protocol version (else VERSION_MISMATCH); a frame
 *   that is not valid JSON of a known message closes that session with INVALID_MESSAGE and nobody
 *   else notices. Oversized frames are cut off by ws (`maxPayload`, close 1009).
 * - Heartbeat: one timer pings every session; a session that did not answer the previous ping is
 *   terminated.
 * - Push: `desired` goes to a session only when its commit or digest differs from what that session has
 *   (reported in hello/status) or was already sent.
 * - Backpressure: while a session's socket holds more than `maxBufferedBytes` unsent, further
 *   `desired` messages wait in a per-project slot where a newer one replaces an older one (only
 *   the newest desired state of a project matters); the slots drain as the socket does. Memory per
 *   slow session is bounded by its project count, not by how often Git moves.
 *
 * What to send comes from a {@link DesiredStateProvider} (serve.ts), so the hub knows nothing of Git.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { JwtError, ReplayCache, verifyAgentJwt } from '../protocol/jwt.js';
import {
  CONNECT_PATH, CloseCode, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, decodeAgentMessage, encodeMessage,
  type AgentMessage, type ConfigMessage, type ErrorMessage,
} from '../protocol/messages.js';
import type { ServerMetrics } from './metrics.js';
import { boundProblems, type Registry } from './registry.js';

/** A desired message for one (agent, project), encoded once and shared by every session. */
export interface DesiredEntry {
  project: string;
  commit: string;
  digest: string;
  /** The JSON text of the `desired` message. */
  encoded: string;
}

/** What the hub sends; implemented by serve.ts over Git and the config loader. */
export interface DesiredStateProvider {
  /** The agent's current `config` message, if its config has been read. */
  configMessage(agentId: string): ConfigMessage | undefined;
  /** Standing problems to tell a newly connected session (config and Git errors). */
  errorMessages(agentId: string): ErrorMessage[];
  /** Current desired state for each of the agent's projects that has one. */
  desired(agentId: string): Promise<DesiredEntry[]>;
}

export interface HubOptions {
  registry: Pick<Registry, 'lookupKey' | 'get' | 'updateStatus' | 'recordApplied' | 'onChange'>;
  provider: DesiredStateProvider;
  audience: string;
  logger: Logger;
  metrics: ServerMetrics;
  /** Ping interval; a peer silent for two intervals is terminated (default 30 s). */
  heartbeatMs?: number;
  /** Time allowed between upgrade and hello (default 10 s). */
  helloTimeoutMs?: number;
  /** Failed upgrades allowed per source address per window before 429 (default 20 per 60 s). */
  authFailureLimit?: { max: number; windowMs: number };
  maxPayload?: number;
  /** Unsent bytes a session may hold before `desired` messages are coalesced (default 4 MiB). */
  maxBufferedBytes?: number;
}

/** Default for HubOptions.maxBufferedBytes. */
export const DEFAULT_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

interface Session {
  readonly ws: WebSocket;
  readonly agentId: string;
  readonly log: Logger;
  ready: boolean;
  alive: boolean;
  /** `commit digest` per project that this session has or was sent. */
  readonly known: Map<string, string>;
  /** Newest desired per project waiting for the socket to drain (insertion order = send order). */
  readonly pending: Map<string, DesiredEntry>;
}

/** What to do with one frame, decided without I/O (unit-tested). */
export type FrameVerdict =
  | { ok: true; message: AgentMessage }
  | { ok: false; code: number; reason: string; metric: string };

/** Validates one frame for a session in the given phase. */
export function judgeFrame(data: RawData, isBinary: boolean, helloDone: boolean): FrameVerdict {
  if (isBinary) return { ok: false, code: CloseCode.INVALID_MESSAGE, reason: 'binary frames are not part of the protocol', metric: 'binary' };
  const text = Buffer.isBuffer(data) ? data.toString('utf8') : Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8');
  const decoded = decodeAgentMessage(text);
  if (!decoded.ok) return { ok: false, code: CloseCode.INVALID_MESSAGE, reason: closeReason(`invalid message: ${decoded.error}`), metric: 'invalid' };
  const message = decoded.message;
  if (!helloDone && message.type !== 'hello') return { ok: false, code: CloseCode.INVALID_MESSAGE, reason: `expected hello first, got ${message.type}`, metric: 'no-hello' };
  if (helloDone && message.type === 'hello') return { ok: false, code: CloseCode.INVALID_MESSAGE, reason: 'hello sent twice', metric: 'duplicate-hello' };
  if (message.type === 'hello' && message.protocolVersion !== PROTOCOL_VERSION) {
    return { ok: false, code: CloseCode.VERSION_MISMATCH, reason: `server speaks protocol ${PROTOCOL_VERSION}, agent sent ${message.protocolVersion}`, metric: 'version' };
  }
  return { ok: true, message };
}

/** Close reasons are limited to 123 bytes by RFC 6455. */
function closeReason(text: string): string {
  const buf = Buffer.from(text, 'utf8');
  return buf.length <= 123 ? text : buf.subarray(0, 120).toString('utf8').replace(/\uFFFD$/, '') + '...';
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 429: 'Too Many Requests', 503: 'Service Unavailable' };

export class Hub {
  private readonly wss: WebSocketServer;
  private readonly sessions = new Map<string, Set<Session>>();
  private readonly failures = new Map<string, { count: number; resetAt: number }>();
  private readonly replayCache = new ReplayCache();
  private readonly heartbeat: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private sessionTotal = 0;
  private closing = false;

  constructor(private readonly options: HubOptions) {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayload ?? MAX_MESSAGE_BYTES, clientTracking: false });
    this.heartbeat = setInterval(() => this.beat(), options.heartbeatMs ?? 30_000);
    this.heartbeat.unref();
    this.unsubscribe = options.registry.onChange((change) => {
      for (const agent of change.revoked) this.closeAgent(agent.id, CloseCode.REVOKED, 'agent revoked');
    });
  }

  /** Number of live sessions. */
  get sessionCount(): number {
    return this.sessionTotal;
  }

  isConnected(agentId: string): boolean {
    return (this.sessions.get(agentId)?.size ?? 0) > 0;
  }

  /** The `upgrade` handler for the HTTP(S) server. */
  handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    this.authenticate(req, socket, head).catch((err: unknown) => {
      this.options.logger.error({ err: errorMessage(err) }, 'upgrade failed');
      this.abortHandshake(socket, 503, 'internal');
    });
  };

  private async authenticate(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const remote = req.socket.remoteAddress ?? 'unknown';
    const url = new URL(req.url ?? '/', 'http://x');
    if (this.closing) return this.abortHandshake(socket, 503, 'shutting-down');
    if (url.pathname !== CONNECT_PATH) return this.abortHandshake(socket, 404, 'wrong-path');
    if (this.tooManyFailures(remote)) return this.abortHandshake(socket, 429, 'rate-limited');
    const auth = req.headers.authorization ?? '';
    const match = /^Bearer ([^\s]+)$/i.exec(auth);
    if (!match) return this.fail(socket, remote, 'JWT_MISSING');
    let agentId: string;
    try {
      ({ agentId } = await verifyAgentJwt(match[1], { audience: this.options.audience, lookupKey: this.options.registry.lookupKey, replayCache: this.replayCache }));
    } catch (err) {
      if (err instanceof JwtError) return this.fail(socket, remote, err.code, err.message);
      throw err;
    }
    if (socket.destroyed) return;
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, agentId, remote));
  }

  private fail(socket: Duplex, remote: string, code: string, detail?: string): void {
    const now = Date.now();
    const entry = this.failures.get(remote);
    if (entry && entry.resetAt > now) entry.count++;
    else {
      if (this.failures.size >= 10_000) for (const [k, v] of this.failures) if (v.resetAt <= now) this.failures.delete(k);
      if (this.failures.size < 10_000) this.failures.set(remote, { count: 1, resetAt: now + (this.options.authFailureLimit?.windowMs ?? 60_000) });
    }
    this.options.logger.warn({ reason: code, detail, remote }, 'agent authentication failed');
    this.abortHandshake(socket, 401, code);
  }

  private tooManyFailures(remote: string): boolean {
    const entry = this.failures.get(remote);
    return Boolean(entry && entry.resetAt > Date.now() && entry.count >= (this.options.authFailureLimit?.max ?? 20));
  }

  /** The single way an upgrade is refused: a bare status line, no body detail. */
  private abortHandshake(socket: Duplex, status: number, reason: string): void {
    this.options.metrics.authFailures.inc({ reason });
    if (socket.writable) {
      socket.write(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    }
    socket.destroy();
  }

  private accept(ws: WebSocket, agentId: string, remote: string): void {
    const record = this.options.registry.get(agentId);
    const log = this.options.logger.child({ agent: record?.name ?? agentId });
    const session: Session = { ws, agentId, log, ready: false, alive: true, known: new Map(), pending: new Map() };
    let set = this.sessions.get(agentId);
    if (!set) {
      set = new Set();
      this.sessions.set(agentId, set);
      this.options.metrics.connectedAgents.inc();
    }
    set.add(session);
    this.sessionTotal++;
    this.options.metrics.connectedSessions.inc();
    log.info({ remote, sessions: set.size }, 'agent connected');
    this.options.registry.updateStatus(agentId, (s) => { s.connected = true; s.sessions = set.size; s.lastSeen = new Date().toISOString(); });

    const helloTimer = setTimeout(() => {
      if (!session.ready) this.closeSession(session, CloseCode.INVALID_MESSAGE, 'no hello received');
    }, this.options.helloTimeoutMs ?? 10_000);
    helloTimer.unref();

    ws.on('pong', () => { session.alive = true; });
    ws.on('message', (data, isBinary) => {
      session.alive = true;
      const verdict = judgeFrame(data, isBinary, session.ready);
      if (!verdict.ok) {
        this.options.metrics.invalidFrames.inc({ reason: verdict.metric });
        log.warn({ reason: verdict.reason }, 'closing session: bad frame');
        this.closeSession(session, verdict.code, verdict.reason);
        return;
      }
      this.onMessage(session, verdict.message).catch((err: unknown) => log.error({ err: errorMessage(err) }, 'message handling failed'));
    });
    ws.on('error', (err) => {
      const tooBig = (err as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
      if (tooBig) this.options.metrics.invalidFrames.inc({ reason: 'oversize' });
      log.warn({ err: err.message, code: (err as { code?: string }).code }, tooBig ? 'closing session: frame too big' : 'session error');
    });
    ws.on('close', (code) => {
      clearTimeout(helloTimer);
      set.delete(session);
      this.sessionTotal--;
      this.options.metrics.connectedSessions.dec();
      if (set.size === 0 && this.sessions.get(agentId) === set) {
        this.sessions.delete(agentId);
        this.options.metrics.connectedAgents.dec();
      }
      log.info({ code, sessions: set.size }, 'agent disconnected');
      this.options.registry.updateStatus(agentId, (s) => { s.sessions = set.size; s.connected = set.size > 0; s.lastSeen = new Date().toISOString(); });
    });
  }

  private async onMessage(session: Session, message: AgentMessage): Promise<void> {
    const { registry } = this.options;
    const now = new Date().toISOString();
    switch (message.type) {
      case 'hello': {
        for (const [project, applied] of Object.entries(message.applied)) {
          if (session.known.size >= 100) break;
          session.known.set(project, `${applied.commit} ${applied.digest}`);
        }
        registry.updateStatus(session.agentId, (s) => { s.agentVersion = message.agentVersion.slice(0, 64); s.lastSeen = now; });
        session.log.info({ agentVersion: message.agentVersion.slice(0, 64), applied: Object.keys(message.applied).length }, 'agent hello');
        session.ready = true;
        const config = this.options.provider.configMessage(session.agentId);
        if (config) this.send(session, encodeMessage(config));
        for (const error of this.options.provider.errorMessages(session.agentId)) this.send(session, encodeMessage(error));
        for (const entry of await this.options.provider.desired(session.agentId)) this.sendDesired(session, entry);
        return;
      }
      case 'status': {
        if (session.known.has(message.project) || session.known.size < 100) session.known.set(message.project, `${message.commit} ${message.digest}`);
        registry.recordApplied(session.agentId, message.project, { commit: message.commit, digest: message.digest, result: message.result, at: now, durationMs: message.durationMs });
        registry.updateStatus(session.agentId, (s) => {
          s.lastSeen = now;
          // Per project: a later good apply of this project clears its error, others keep theirs.
          if (message.errors.length === 0 && message.result === 'applied') {
            if (s.projectErrors?.[message.project]) {
              const { [message.project]: _cleared, ...rest } = s.projectErrors;
              if (Object.keys(rest).length) s.projectErrors = rest;
              else delete s.projectErrors;
            }
            return;
          }
          const errors = s.projectErrors ?? {};
          if (!(message.project in errors) && Object.keys(errors).length >= 100) return;
          const failed = message.changes.filter((c) => c.action === 'failed').map((c) => ({ code: 'APPLY_FAILED', message: c.error ?? 'failed', object: c.id }));
          errors[message.project] = { at: now, commit: message.commit, problems: boundProblems([...message.errors, ...failed]) };
          s.projectErrors = errors;
        });
        session.log.info({ project: message.project, commit: message.commit, result: message.result, durationMs: message.durationMs }, 'agent status');
        return;
      }
      case 'drift': {
        registry.updateStatus(session.agentId, (s) => {
          s.lastSeen = now;
          s.driftCount = (s.driftCount ?? 0) + 1;
          s.lastDrift = { project: message.project.slice(0, 300), object: message.object.slice(0, 300), action: message.action, manager: message.manager?.slice(0, 100), at: message.at.slice(0, 40) };
        });
        session.log.info({ project: message.project, object: message.object, action: message.action, manager: message.manager }, 'agent drift');
        return;
      }
    }
  }

  /** Sends `config` to every ready session of the agent. */
  pushConfig(agentId: string, message: ConfigMessage): void {
    this.broadcast(agentId, message);
  }

  /** Sends `error` to every ready session of the agent. */
  pushError(agentId: string, message: ErrorMessage): void {
    this.broadcast(agentId, message);
  }

  private broadcast(agentId: string, message: ConfigMessage | ErrorMessage): void {
    // Encoded only for an agent with sessions: most of 10,000 registered agents have none.
    const sessions = this.sessions.get(agentId);
    if (!sessions?.size) return;
    const encoded = encodeMessage(message);
    for (const session of sessions) if (session.ready) this.send(session, encoded);
  }

  /** Sends `desired` to each ready session of the agent that does not have this digest. */
  pushDesired(agentId: string, entry: DesiredEntry): void {
    for (const session of this.sessions.get(agentId) ?? []) if (session.ready) this.sendDesired(session, entry);
  }

  /** Closes every session of an agent (revocation). */
  closeAgent(agentId: string, code: number, reason: string): void {
    for (const session of this.sessions.get(agentId) ?? []) {
      session.log.info({ code, reason }, 'closing agent session');
      this.closeSession(session, code, reason);
    }
  }

  /** Stops accepting, closes every session with GOING_AWAY and stops the heartbeat. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.heartbeat);
    this.unsubscribe();
    const closed: Promise<void>[] = [];
    for (const set of this.sessions.values()) {
      for (const session of set) {
        closed.push(new Promise((resolve) => session.ws.once('close', () => resolve())));
        this.closeSession(session, CloseCode.GOING_AWAY, 'server shutting down');
      }
    }
    await Promise.race([Promise.all(closed), new Promise((r) => setTimeout(r, 2000).unref())]);
    for (const set of this.sessions.values()) for (const session of set) session.ws.terminate();
    this.wss.close();
  }

  private sendDesired(session: Session, entry: DesiredEntry): void {
    const key = `${entry.commit} ${entry.digest}`;
    if (session.known.get(entry.project) === key) return;
    session.known.set(entry.project, key);
    if (session.pending.size > 0 || session.ws.bufferedAmount > this.maxBuffered) {
      if (session.pending.delete(entry.project)) this.options.metrics.desiredCoalesced.inc();
      else if (session.pending.size === 0) session.log.debug({ bufferedBytes: session.ws.bufferedAmount }, 'slow session: holding desired messages');
      session.pending.set(entry.project, entry);
      return;
    }
    this.options.metrics.desiredPushes.inc();
    this.send(session, entry.encoded);
  }

  private get maxBuffered(): number {
    return this.options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
  }

  private send(session: Session, encoded: string): void {
    if (session.ws.readyState !== session.ws.OPEN) return;
    session.ws.send(encoded, (err) => {
      if (err) session.log.warn({ err: err.message }, 'send failed');
      // Called once the frame left for the socket: room again for held desired messages.
      else if (session.pending.size > 0) this.drain(session);
    });
  }

  /** Sends held desired messages, oldest project first, while the socket has room. */
  private drain(session: Session): void {
    for (const [project, entry] of session.pending) {
      if (session.ws.bufferedAmount > this.maxBuffered || session.ws.readyState !== session.ws.OPEN) return;
      session.pending.delete(project);
      this.options.metrics.desiredPushes.inc();
      this.send(session, entry.encoded);
    }
  }

  private closeSession(session: Session, code: number, reason: string): void {
    session.ready = false;
    if (session.ws.readyState === session.ws.OPEN || session.ws.readyState === session.ws.CONNECTING) {
      session.ws.close(code, closeReason(reason));
      // A peer that never answers the close frame is cut off.
      setTimeout(() => session.ws.terminate(), 5_000).unref();
    }
  }

  private beat(): void {
    for (const set of this.sessions.values()) {
      for (const session of set) {
        if (!session.alive) {
          session.log.warn('terminating dead session (no pong)');
          session.ws.terminate();
          continue;
        }
        session.alive = false;
        session.ws.ping();
      }
    }
  }
}
