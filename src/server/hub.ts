/**
 * The WebSocket hub: authenticates agents in the HTTP upgrade (before any frame), keeps their
 * sessions, validates every frame, and sends each session `config`, `error` and `desired` messages.
 *
 * - Authentication: a flat list of guard clauses in `authenticate` (the body of the upgrade
 *   handler), each failure ending in one `abortHandshake` (bare 401/404/429, reason in the log
 *   and metrics, never the JWT). Failed
 *   attempts are counted per client address (client-address.ts: X-Forwarded-For only from a
 *   trusted proxy) and claimed agent id; above a limit that key's failures get 429, but a JWT
 *   that verifies always passes, so one agent's bad attempts never lock out another, nor itself
 *   once fixed.
 * - Per-agent limits (admission.ts), so a leaked token hurts only its agent: a connection rate
 *   per verified agent (429 JWT_RATE_LIMITED), a quota of live JWT ids in the replay cache
 *   (429 JWT_REPLAY_QUOTA), and at most `maxSessionsPerAgent` sessions: a newer session closes
 *   the oldest with SESSION_REPLACED (a live agent is never locked out by stale sessions).
 * - Frames: the first must be `hello` with a version the server speaks (SUPPORTED_PROTOCOL_VERSIONS,
 *   else VERSION_MISMATCH), remembered for the session: a v2 session's `config` frames carry
 *   `protocolVersion: 2`, a v1 session gets exactly what a v1 server sent and may not send
 *   `health`. A frame that is not valid JSON of a known message of its version (every string and
 *   list bounded, messages.ts) closes that session with INVALID_MESSAGE and nobody else notices.
 *   Frames over MAX_AGENT_MESSAGE_BYTES are cut off by ws before they are buffered (`maxPayload`,
 *   close 1009).
 * - Reports: a status, drift or health for a project that is not a manifest project of the
 *   agent's current config is refused (counted, logged and told to the agent once per session,
 *   never stored), so the registry only ever holds the agent's own projects. A health result that
 *   changes is one log line (`agent commit healthy|degraded|timed out`).
 * - Heartbeat: one timer pings every session; a session that did not answer the previous ping is
 *   terminated.
 * - Push: `desired` goes to a session only when its commit or digest differs from what that session has
 *   (reported in hello/status) or was already sent.
 * - Backpressure: while a session's socket holds more than `maxBufferedBytes` unsent, further
 *   `desired` messages wait in a per-project slot where a newer one replaces an older one (only
 *   the newest desired state of a project matters); the slots drain as the socket does. Memory per
 *   slow session is bounded by its project count, not by how often Git moves.
 *
 * What to send comes from a {@link DesiredStateProvider} (ports.ts; the Fleet implements it), so the
 * hub knows nothing of Git; the Fleet pushes through the hub as its {@link Pusher}.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import {
  DEFAULT_REPLAY_CACHE_ENTRIES,
  DEFAULT_REPLAY_QUOTA_PER_AGENT,
  JWT_THROTTLE_CODES,
  JwtError,
  JwtRateLimitedError,
  ReplayCache,
  claimedKid,
  verifyAgentJwt,
} from '../protocol/jwt.js';
import { decodeFrame } from '../protocol/frames.js';
import { ProblemCode } from '../protocol/problems.js';
import {
  CONNECT_PATH,
  CloseCode,
  MAX_AGENT_MESSAGE_BYTES,
  SUPPORTED_PROTOCOL_VERSIONS,
  allowedInVersion,
  decodeAgentMessage,
  encodeMessage,
  type AgentMessage,
  type ConfigMessage,
  type ErrorMessage,
  type HealthMessage,
  type ProblemReport,
  type StatusMessage,
} from '../protocol/messages.js';
import {
  DEFAULT_AGENT_CONNECT_RATE,
  DEFAULT_FAILURE_LIMIT,
  FailureWindows,
  RateLimiter,
  type FailureLimit,
  type RateLimit,
} from './admission.js';
import { clientAddress, parseTrustedProxies, type TrustedProxies } from './client-address.js';
import { CONFIG_LIMITS } from './config.js';
import type { ServerMetrics } from './metrics.js';
import type { DesiredEntry, DesiredStateProvider, Pusher } from './ports.js';
import type { HealthChange, Registry } from './registry.js';

export interface HubOptions {
  registry: Pick<Registry, 'lookupKey' | 'get' | 'onChange' | HubStatusWrites>;
  provider: DesiredStateProvider;
  audience: string;
  logger: Logger;
  metrics: ServerMetrics;
  /** Ping interval; a peer silent for two intervals is terminated (default 30 s). */
  heartbeatMs?: number;
  /** Time allowed between upgrade and hello (default 10 s). */
  helloTimeoutMs?: number;
  /** Failed upgrades allowed per client address and claimed agent per window before 429 (default 20 per 60 s). */
  authFailureLimit?: FailureLimit;
  /** Upgrades per verified agent (default a burst of 20, then 10 a minute). */
  connectRate?: RateLimit;
  /** Live JWT ids one agent may hold in the replay cache (default 100). */
  replayQuotaPerAgent?: number;
  /** Live JWT ids in the whole replay cache (default 200,000). */
  replayCacheEntries?: number;
  /** Sessions per agent; a newer one closes the oldest with SESSION_REPLACED (default 4). */
  maxSessionsPerAgent?: number;
  /** Peers whose X-Forwarded-For names the client (`--trusted-proxy`; default none). */
  trustedProxies?: TrustedProxies;
  /** Largest inbound frame (default MAX_AGENT_MESSAGE_BYTES). */
  maxPayload?: number;
  /** Unsent bytes a session may hold before `desired` messages are coalesced (default 4 MiB). */
  maxBufferedBytes?: number;
}

/** Default for HubOptions.maxBufferedBytes. */
export const DEFAULT_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
/** Default for HubOptions.maxSessionsPerAgent: two replicas, each with a stale session not yet noticed. */
export const DEFAULT_MAX_SESSIONS_PER_AGENT = 4;
/** Projects whose commit a session remembers (hello, status): as many as a config.yaml may name. */
const MAX_KNOWN_PROJECTS = CONFIG_LIMITS.manifestProjects;
/** Lines per key and minute about refused upgrades; beyond it only metrics count them. */
const REFUSAL_LOG_LINES = 20;

interface Session {
  readonly ws: WebSocket;
  readonly agentId: string;
  readonly log: Logger;
  ready: boolean;
  /** The version the agent said in hello (0 before it). */
  protocolVersion: number;
  alive: boolean;
  /** Closed (or closing) by the server: no longer counted against the agent's session cap. */
  closing: boolean;
  /** Reports refused for naming a project the agent does not follow (logged and told once). */
  refused: number;
  /** `commit digest` per project that this session has or was sent. */
  readonly known: Map<string, string>;
  /** Newest desired per project waiting for the socket to drain (insertion order = send order). */
  readonly pending: Map<string, DesiredEntry>;
}

/** The registry's status writes the hub makes (registry.ts owns the records and their bounds). */
type HubStatusWrites =
  'recordSessions' | 'recordHello' | 'recordApplied' | 'recordProjectProblems' | 'recordDrift' | 'recordHealth';

/**
 * The problems a status report leaves for its project, or undefined for a good apply (which clears
 * them): the agent's errors, each failed object (the first 20, with its code from a v2 agent,
 * APPLY_FAILED otherwise), and a note when the report was cut.
 */
export function statusProblems(message: StatusMessage): { commit: string; problems: ProblemReport[] } | undefined {
  if (message.errors.length === 0 && message.result === 'applied') return undefined;
  const failed = message.changes
    .filter((c) => c.action === 'failed')
    .slice(0, 20)
    .map((c) => ({ code: c.code ?? ProblemCode.APPLY_FAILED, message: c.error ?? 'failed', object: c.id }));
  const { truncated } = message;
  const cut = truncated
    ? [
        {
          code: ProblemCode.STATUS_TRUNCATED,
          message: `the agent's report was cut to fit: ${truncated.changes} objects (${truncated.counts.failed ?? 0} failed), ${message.changes.length} listed`,
        },
      ]
    : [];
  return { commit: message.commit, problems: [...message.errors, ...failed, ...cut] };
}

/** What to do with one frame, decided without I/O (unit-tested). */
export type FrameVerdict =
  { ok: true; message: AgentMessage } | { ok: false; code: number; reason: string; metric: string };

/**
 * Validates one frame for a session in the given phase: before hello (`helloVersion` 0), or after
 * a hello that said `helloVersion`.
 */
export function judgeFrame(data: RawData, isBinary: boolean, helloVersion: number): FrameVerdict {
  const helloDone = helloVersion > 0;
  const decoded = decodeFrame(data, isBinary, decodeAgentMessage);
  if (!decoded.ok && decoded.kind === 'binary')
    return { ok: false, code: CloseCode.INVALID_MESSAGE, reason: decoded.error, metric: 'binary' };
  if (!decoded.ok)
    return {
      ok: false,
      code: CloseCode.INVALID_MESSAGE,
      reason: closeReason(`invalid message: ${decoded.error}`),
      metric: 'invalid',
    };
  const message = decoded.message;
  if (!helloDone && message.type !== 'hello')
    return {
      ok: false,
      code: CloseCode.INVALID_MESSAGE,
      reason: `expected hello first, got ${message.type}`,
      metric: 'no-hello',
    };
  if (helloDone && message.type === 'hello')
    return { ok: false, code: CloseCode.INVALID_MESSAGE, reason: 'hello sent twice', metric: 'duplicate-hello' };
  if (message.type === 'hello' && !SUPPORTED_PROTOCOL_VERSIONS.includes(message.protocolVersion)) {
    return {
      ok: false,
      code: CloseCode.VERSION_MISMATCH,
      reason: `server speaks protocol ${SUPPORTED_PROTOCOL_VERSIONS.join(' or ')}, agent sent ${message.protocolVersion}`,
      metric: 'version',
    };
  }
  if (helloDone && !allowedInVersion(message, helloVersion))
    return {
      ok: false,
      code: CloseCode.INVALID_MESSAGE,
      reason: `${message.type} needs protocol 2; this session's hello said ${helloVersion}`,
      metric: 'version',
    };
  return { ok: true, message };
}

/**
 * The config frame for a session of `version`: a v2 session is told the server speaks 2; a v1
 * session gets the frame as version 1 defined it (its strict schema refuses an unknown field).
 */
export function configFor(version: number, message: ConfigMessage): ConfigMessage {
  const { protocolVersion: _none, ...v1 } = message;
  return version >= 2 ? { ...v1, protocolVersion: version } : v1;
}

/** Close reasons are limited to 123 bytes by RFC 6455. */
function closeReason(text: string): string {
  const buf = Buffer.from(text, 'utf8');
  return buf.length <= 123
    ? text
    : buf
        .subarray(0, 120)
        .toString('utf8')
        .replace(/\uFFFD$/, '') + '...';
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

export class Hub implements Pusher {
  private readonly wss: WebSocketServer;
  private readonly sessions = new Map<string, Set<Session>>();
  private readonly failures: FailureWindows;
  /** Failure and throttle log lines per client address / agent: a flood is counted, not logged line by line. */
  private readonly refusalLogs = new FailureWindows({ max: REFUSAL_LOG_LINES, windowMs: 60_000 });
  private readonly connectRate: RateLimiter;
  private readonly replayCache: ReplayCache;
  private readonly trustedProxies: TrustedProxies;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private sessionTotal = 0;
  private closing = false;

  constructor(private readonly options: HubOptions) {
    // Inbound frames only: what the server sends (desired state, up to MAX_MESSAGE_BYTES) is not limited by this.
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxPayload ?? MAX_AGENT_MESSAGE_BYTES,
      clientTracking: false,
      perMessageDeflate: false,
    });
    this.failures = new FailureWindows(options.authFailureLimit ?? DEFAULT_FAILURE_LIMIT);
    this.connectRate = new RateLimiter(options.connectRate ?? DEFAULT_AGENT_CONNECT_RATE);
    this.replayCache = new ReplayCache(
      options.replayCacheEntries ?? DEFAULT_REPLAY_CACHE_ENTRIES,
      options.replayQuotaPerAgent ?? DEFAULT_REPLAY_QUOTA_PER_AGENT,
    );
    this.trustedProxies = options.trustedProxies ?? parseTrustedProxies([]).proxies;
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
    const remote = clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], this.trustedProxies);
    const url = new URL(req.url ?? '/', 'http://x');
    if (this.closing) return this.abortHandshake(socket, 503, 'shutting-down');
    if (url.pathname !== CONNECT_PATH) return this.abortHandshake(socket, 404, 'wrong-path');
    const jwt = /^Bearer ([^\s]+)$/i.exec(req.headers.authorization ?? '')?.[1];
    // Failures are keyed by address and the agent the JWT claims to be: behind one proxy, one
    // agent's bad attempts must not lock out the others.
    const kid = jwt ? claimedKid(jwt) : undefined;
    const failKey = `${remote} ${kid ?? '-'}`;
    const locked = this.failures.locked(failKey, Date.now());
    if (!jwt) return this.fail(socket, remote, failKey, locked, 'JWT_MISSING');
    if (locked) {
      // Locked out: only a JWT that can still verify is looked at (a valid one passes).
      const key = kid ? this.options.registry.lookupKey(kid) : undefined;
      if (!key || key.revoked)
        return this.fail(socket, remote, failKey, locked, key ? 'JWT_AGENT_REVOKED' : 'JWT_UNKNOWN_AGENT');
    }
    let agentId: string;
    try {
      ({ agentId } = await verifyAgentJwt(jwt, {
        audience: this.options.audience,
        lookupKey: this.options.registry.lookupKey,
        replayCache: this.replayCache,
        admit: this.admit,
      }));
    } catch (err) {
      if (err instanceof JwtError && JWT_THROTTLE_CODES.has(err.code))
        return this.throttle(socket, remote, kid ?? '-', err);
      if (err instanceof JwtError) return this.fail(socket, remote, failKey, locked, err.code, err.message);
      throw err;
    }
    if (socket.destroyed) return;
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, agentId, remote));
  }

  /** The per-agent connection rate, checked once the JWT verified (a stranger cannot spend it). */
  private readonly admit = (agentId: string): void => {
    const now = Date.now();
    if (this.connectRate.take(agentId, now)) return;
    const rate = this.options.connectRate ?? DEFAULT_AGENT_CONNECT_RATE;
    throw new JwtRateLimitedError(
      agentId,
      `more than ${rate.burst} connections at once or ${rate.perMinute} a minute; retry in ${Math.ceil(this.connectRate.retryAfterMs(agentId, now) / 1000)}s`,
    );
  };

  /** A failed authentication: 401 (429 once its key is locked), counted for the key. */
  private fail(socket: Duplex, remote: string, failKey: string, locked: boolean, code: string, detail?: string): void {
    const now = Date.now();
    if (locked) {
      this.options.metrics.authFailures.inc({ reason: code });
      return this.abortHandshake(socket, 429, 'rate-limited');
    }
    const count = this.failures.record(failKey, now);
    const lines = this.refusalLogs.record(`fail ${remote}`, now);
    const max = (this.options.authFailureLimit ?? DEFAULT_FAILURE_LIMIT).max;
    if (lines <= REFUSAL_LOG_LINES) {
      this.options.logger.warn(
        { reason: code, detail, remote, ...(count >= max ? { lockedOut: true } : {}) },
        'agent authentication failed',
      );
    } else if (lines === REFUSAL_LOG_LINES + 1) {
      this.options.logger.warn(
        { remote },
        'more agent authentication failures from this address: counted in metrics, not logged, for a minute',
      );
    }
    this.abortHandshake(socket, 401, code);
  }

  /** A verified agent over one of its limits: 429, not a failure (its token is fine). */
  private throttle(socket: Duplex, remote: string, kid: string, err: JwtError): void {
    const now = Date.now();
    this.options.metrics.agentLimited.inc({ reason: err.code });
    const lines = this.refusalLogs.record(`throttle ${kid}`, now);
    if (lines <= REFUSAL_LOG_LINES)
      this.options.logger.warn(
        { reason: err.code, detail: err.message, remote },
        'agent connection refused: over a per-agent limit',
      );
    else if (lines === REFUSAL_LOG_LINES + 1)
      this.options.logger.warn(
        { reason: err.code, agentId: kid, remote },
        'more refused connections of this agent: counted in metrics, not logged, for a minute',
      );
    this.abortHandshake(socket, 429, err.code);
  }

  /** The single way an upgrade is refused: a bare status line, no body detail. */
  private abortHandshake(socket: Duplex, status: number, reason: string): void {
    this.options.metrics.authFailures.inc({ reason });
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    // end, then destroy once flushed: a destroy right after write may drop the status line on a
    // TLS socket, and the agent sees a hang-up instead of 401/429. A peer that never reads is cut off.
    socket.once('finish', () => socket.destroy());
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
    );
    setTimeout(() => socket.destroy(), 1_000).unref();
  }

  private accept(ws: WebSocket, agentId: string, remote: string): void {
    const record = this.options.registry.get(agentId);
    const log = this.options.logger.child({ agent: record?.name ?? agentId });
    const session: Session = {
      ws,
      agentId,
      log,
      ready: false,
      protocolVersion: 0,
      alive: true,
      closing: false,
      refused: 0,
      known: new Map(),
      pending: new Map(),
    };
    let set = this.sessions.get(agentId);
    if (!set) {
      set = new Set();
      this.sessions.set(agentId, set);
      this.options.metrics.connectedAgents.inc();
    }
    const max = this.options.maxSessionsPerAgent ?? DEFAULT_MAX_SESSIONS_PER_AGENT;
    const live = [...set].filter((s) => !s.closing);
    // Oldest first (a Set keeps insertion order): a reconnecting agent replaces its stale sessions.
    for (const old of live.slice(0, Math.max(0, live.length - max + 1))) {
      this.options.metrics.agentLimited.inc({ reason: 'sessions' });
      old.log.warn({ max }, 'closing the oldest session of this agent: a newer one connected');
      this.closeSession(old, CloseCode.SESSION_REPLACED, `replaced by a newer session (at most ${max} per agent)`);
    }
    set.add(session);
    this.sessionTotal++;
    this.options.metrics.connectedSessions.inc();
    log.info({ remote, sessions: set.size }, 'agent connected');
    this.options.registry.recordSessions(agentId, set.size);

    const helloTimer = setTimeout(() => {
      if (!session.ready) this.closeSession(session, CloseCode.INVALID_MESSAGE, 'no hello received');
    }, this.options.helloTimeoutMs ?? 10_000);
    helloTimer.unref();

    ws.on('pong', () => {
      session.alive = true;
    });
    ws.on('message', (data, isBinary) => {
      session.alive = true;
      const verdict = judgeFrame(data, isBinary, session.protocolVersion);
      if (!verdict.ok) {
        this.options.metrics.invalidFrames.inc({ reason: verdict.metric });
        log.warn({ reason: verdict.reason }, 'closing session: bad frame');
        this.closeSession(session, verdict.code, verdict.reason);
        return;
      }
      this.onMessage(session, verdict.message).catch((err: unknown) =>
        log.error({ err: errorMessage(err) }, 'message handling failed'),
      );
    });
    ws.on('error', (err) => {
      const tooBig = (err as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
      if (tooBig) this.options.metrics.invalidFrames.inc({ reason: 'oversize' });
      log.warn(
        { err: err.message, code: (err as { code?: string }).code },
        tooBig ? 'closing session: frame too big' : 'session error',
      );
    });
    ws.on('close', (code) => {
      clearTimeout(helloTimer);
      session.closing = true;
      set.delete(session);
      this.sessionTotal--;
      this.options.metrics.connectedSessions.dec();
      if (set.size === 0 && this.sessions.get(agentId) === set) {
        this.sessions.delete(agentId);
        this.options.metrics.connectedAgents.dec();
      }
      log.info(
        { code, sessions: set.size, ...(session.refused ? { refusedReports: session.refused } : {}) },
        'agent disconnected',
      );
      this.options.registry.recordSessions(agentId, set.size);
    });
  }

  private async onMessage(session: Session, message: AgentMessage): Promise<void> {
    const { registry } = this.options;
    const now = new Date().toISOString();
    switch (message.type) {
      case 'hello': {
        for (const [project, applied] of Object.entries(message.applied)) {
          if (session.known.size >= MAX_KNOWN_PROJECTS) break;
          session.known.set(project, `${applied.commit} ${applied.digest}`);
        }
        registry.recordHello(session.agentId, message.agentVersion, now);
        session.log.info(
          {
            agentVersion: message.agentVersion.slice(0, 64),
            protocolVersion: message.protocolVersion,
            applied: Object.keys(message.applied).length,
          },
          'agent hello',
        );
        session.protocolVersion = message.protocolVersion;
        session.ready = true;
        const config = this.options.provider.configMessage(session.agentId);
        if (config) this.send(session, encodeMessage(configFor(session.protocolVersion, config)));
        for (const error of this.options.provider.errorMessages(session.agentId))
          this.send(session, encodeMessage(error));
        for (const entry of await this.options.provider.desired(session.agentId)) this.sendDesired(session, entry);
        return;
      }
      case 'status': {
        if (!this.follows(session, message.type, message.project)) return;
        if (session.known.has(message.project) || session.known.size < MAX_KNOWN_PROJECTS)
          session.known.set(message.project, `${message.commit} ${message.digest}`);
        registry.recordApplied(session.agentId, message.project, {
          commit: message.commit,
          digest: message.digest,
          result: message.result,
          at: now,
          durationMs: message.durationMs,
        });
        // Per project: a later good apply of this project clears its problems, others keep theirs.
        registry.recordProjectProblems(session.agentId, message.project, now, statusProblems(message));
        session.log.info(
          {
            project: message.project,
            commit: message.commit,
            result: message.result,
            durationMs: message.durationMs,
            ...(message.truncated ? { objects: message.truncated.changes, listed: message.changes.length } : {}),
          },
          'agent status',
        );
        return;
      }
      case 'health':
        if (!this.follows(session, message.type, message.project)) return;
        this.noteHealth(session, message, registry.recordHealth(session.agentId, message, now));
        return;
      case 'drift': {
        if (!this.follows(session, message.type, message.project)) return;
        registry.recordDrift(
          session.agentId,
          {
            project: message.project,
            object: message.object,
            action: message.action,
            manager: message.manager,
            at: message.at,
          },
          now,
        );
        session.log.info(
          {
            project: message.project,
            object: message.object.slice(0, 300),
            action: message.action,
            manager: message.manager?.slice(0, 100),
          },
          'agent drift',
        );
        return;
      }
    }
  }

  /** One line when a project's health settles on a new result (or an older commit's is ignored, at debug). */
  private noteHealth(session: Session, message: HealthMessage, change: HealthChange): void {
    const fields = { project: message.project, commit: message.commit, result: message.result };
    if (change.kind === 'stale') {
      session.log.debug({ ...fields, statusCommit: change.statusCommit }, 'agent health for an older commit ignored');
      return;
    }
    if (change.kind !== 'changed' || message.result === 'progressing') return;
    const words = { healthy: 'healthy', degraded: 'degraded', timed_out: 'timed out' } as const;
    const line = {
      ...fields,
      waitedMs: message.waitedMs,
      notCurrent: change.record.notCurrent,
      objects: change.record.total,
    };
    if (message.result === 'healthy') session.log.info(line, 'agent commit healthy');
    else session.log.warn(line, `agent commit ${words[message.result]}`);
  }

  /**
   * Whether a report's project is one of the agent's manifest projects. Others are refused: the
   * first of a session is logged and told to the agent, the rest only counted.
   */
  private follows(session: Session, type: string, project: string): boolean {
    const projects = this.options.provider.projectsOf(session.agentId);
    if (projects.includes(project)) return true;
    this.options.metrics.agentLimited.inc({ reason: 'unknown-project' });
    if (session.refused++ === 0) {
      const shown = JSON.stringify(project.slice(0, 100));
      session.log.warn(
        { type, project: project.slice(0, 100), projects: projects.length },
        'report refused: not a manifest project of this agent',
      );
      this.send(
        session,
        encodeMessage({
          type: 'error',
          problems: [
            {
              code: ProblemCode.REPORT_REFUSED,
              message: `${type} for project ${shown} refused: it is not a manifest project of this agent's config.yaml${projects.length ? '' : ' (not read yet)'}; reports for it are not stored`,
            },
          ],
        }),
      );
    }
    return false;
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
    // Encoded only for an agent with sessions: most of 10,000 registered agents have none, and
    // once per version the sessions speak.
    const sessions = this.sessions.get(agentId);
    if (!sessions?.size) return;
    const encoded = new Map<number, string>();
    for (const session of sessions) {
      if (!session.ready) continue;
      const version = session.protocolVersion;
      let text = encoded.get(version);
      if (text === undefined) {
        text = encodeMessage(message.type === 'config' ? configFor(version, message) : message);
        encoded.set(version, text);
      }
      this.send(session, text);
    }
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
      else if (session.pending.size === 0)
        session.log.debug({ bufferedBytes: session.ws.bufferedAmount }, 'slow session: holding desired messages');
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
    session.closing = true;
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
