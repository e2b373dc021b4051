// The agent's session against a plain ws server: one that enforces the server's inbound limit (a
// report too big for it is sent shortened, with the totals, instead of being cut off with 1009),
// and servers of protocol versions 1 and 2 (health frames only reach a server that speaks 2).
import { describe, expect, it } from '@jest/globals';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { silentLogger, type Logger } from '../common/logger.js';
import {
  CloseCode,
  MAX_AGENT_MESSAGE_BYTES,
  decodeAgentMessage,
  encodeMessage,
  type AgentMessage,
  type ConfigMessage,
  type HealthMessage,
  type StatusMessage,
} from '../protocol/messages.js';
import { Session } from './session.js';

describe('Session reports', () => {
  it('sends a status of 50,000 changed objects as one frame within the inbound limit, saying it was cut', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', maxPayload: MAX_AGENT_MESSAGE_BYTES });
    await new Promise((r) => wss.once('listening', r));
    const frames: Array<{ bytes: number; text: string }> = [];
    const closes: number[] = [];
    wss.on('connection', (ws) => {
      ws.on('message', (data: Buffer) => frames.push({ bytes: data.length, text: data.toString('utf8') }));
      ws.on('close', (code) => closes.push(code));
    });
    const { logger, lines } = recordingLogger();
    const session = sessionFor(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/api/v1/agent/connect`, logger);
    const changes = Array.from({ length: 50_000 }, (_, i) => ({
      id: `ConfigMap/ns-${i % 50}/generated-object-${i}`,
      action: i % 10_000 === 0 ? ('failed' as const) : ('configured' as const),
      ...(i % 10_000 === 0 ? { error: 'denied' } : {}),
    }));
    const status: StatusMessage = {
      type: 'status',
      project: 'group/app',
      commit: 'b'.repeat(40),
      digest: 'd',
      result: 'partial',
      changes,
      errors: [],
      durationMs: 5,
    };
    try {
      session.send(status); // buffered until connected
      session.start();
      const deadline = Date.now() + 5000;
      while (frames.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const report = frames.find((f) => f.text.includes('"status"'));
      expect(report).toBeDefined();
      expect(report!.bytes).toBeLessThanOrEqual(MAX_AGENT_MESSAGE_BYTES);
      const decoded = decodeAgentMessage(report!.text);
      expect(decoded.ok).toBe(true);
      if (decoded.ok && decoded.message.type === 'status') {
        expect(decoded.message.truncated).toEqual({
          changes: 50_000,
          errors: 0,
          counts: { configured: 49_995, failed: 5 },
        });
        expect(decoded.message.changes.slice(0, 5).every((c) => c.action === 'failed')).toBe(true);
      }
      expect(closes).toEqual([]);
      expect(lines).toContainEqual({
        level: 'warn',
        msg: 'report too big for the server: sending a shortened one with the totals',
      });
    } finally {
      await session.stop();
      await new Promise((r) => wss.close(r));
    }
  });
});

const sha = 'c'.repeat(40);
const health = (project: string, result: HealthMessage['result'] = 'healthy'): HealthMessage => ({
  type: 'health',
  project,
  commit: sha,
  digest: 'd',
  result,
  objects: [{ id: 'Deployment/default/nginx', state: result === 'healthy' ? 'current' : 'in_progress' }],
});
const statusOf = (project: string): StatusMessage => ({
  type: 'status',
  project,
  commit: sha,
  digest: 'd',
  result: 'applied',
  changes: [],
  errors: [],
  durationMs: 1,
});

/** Log lines by level, for "said once" checks. */
function recordingLogger(): { logger: Logger; lines: Array<{ level: string; msg: string }> } {
  const lines: Array<{ level: string; msg: string }> = [];
  const at =
    (level: string) =>
    (_fields: unknown, msg?: string): void => {
      lines.push({ level, msg: String(msg) });
    };
  const logger = {
    ...silentLogger(),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
  } as unknown as Logger;
  return { logger, lines };
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A server double speaking `versions`: hello of another version is closed with VERSION_MISMATCH,
 * as the real hub does, and what follows on that connection is not read (as the hub reads
 * nothing of a session without hello); after hello it sends a config frame (with
 * `protocolVersion` when it speaks 2 and the agent said 2). The frames it read are kept, decoded.
 */
async function fakeServer(versions: readonly number[]): Promise<{
  url: string;
  frames: AgentMessage[];
  sockets: WebSocket[];
  close: () => Promise<void>;
}> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', maxPayload: MAX_AGENT_MESSAGE_BYTES });
  await new Promise((r) => wss.once('listening', r));
  const frames: AgentMessage[] = [];
  const sockets: WebSocket[] = [];
  wss.on('connection', (ws) => {
    sockets.push(ws);
    let refused = false;
    ws.on('message', (data: Buffer) => {
      if (refused) return;
      const decoded = decodeAgentMessage(data.toString('utf8'));
      if (!decoded.ok) throw new Error(decoded.error);
      const message = decoded.message;
      frames.push(message);
      if (message.type !== 'hello') return;
      if (!versions.includes(message.protocolVersion)) {
        refused = true;
        ws.close(CloseCode.VERSION_MISMATCH, `server speaks protocol ${versions.join(', ')}`);
        return;
      }
      const config: ConfigMessage = {
        type: 'config',
        settings: { drift: { mode: 'correct', ignore: [] } },
        projects: ['a', 'b'],
        errors: [],
        ...(message.protocolVersion >= 2 ? { protocolVersion: message.protocolVersion } : {}),
      };
      ws.send(encodeMessage(config));
    });
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/api/v1/agent/connect`,
    frames,
    sockets,
    close: async () => {
      for (const ws of sockets) ws.terminate();
      await new Promise((r) => wss.close(r));
    },
  };
}

function sessionFor(url: string, logger: Logger = silentLogger()): Session {
  return new Session({
    url,
    signJwt: async () => 'jwt',
    agentVersion: 'test',
    applied: () => ({}),
    logger,
    onConfig: () => undefined,
    onDesired: () => undefined,
    onError: () => undefined,
    reconnect: { baseMs: 10, capMs: 20 },
    slowReconnect: { baseMs: 10, capMs: 20 },
  });
}

const ofType = <T extends AgentMessage['type']>(
  frames: AgentMessage[],
  type: T,
): Extract<AgentMessage, { type: T }>[] =>
  frames.filter((f): f is Extract<AgentMessage, { type: T }> => f.type === type);

describe('Session health and protocol versions', () => {
  it('says version 2 in hello and sends health to a v2 server, only the newest per project of those buffered', async () => {
    const server = await fakeServer([1, 2]);
    const session = sessionFor(server.url);
    try {
      session.send(health('a', 'progressing'));
      session.send(health('b', 'progressing'));
      session.send(health('a', 'healthy'));
      expect(session.buffered).toBe(2);
      session.start();
      await until('two health frames', () => ofType(server.frames, 'health').length === 2);
      expect(ofType(server.frames, 'hello')[0].protocolVersion).toBe(2);
      expect(session.serverProtocolVersion).toBe(2);
      expect(ofType(server.frames, 'health').map((h) => [h.project, h.result])).toEqual([
        ['b', 'progressing'],
        ['a', 'healthy'],
      ]);
      // Connected: sent at once.
      session.send(health('b', 'degraded'));
      await until('the third health frame', () => ofType(server.frames, 'health').length === 3);
      expect(ofType(server.frames, 'health')[2].result).toBe('degraded');
    } finally {
      await session.stop();
      await server.close();
    }
  });

  it('against a v1-only server: reconnects speaking 1, drops health (debug) and still sends status', async () => {
    const { logger, lines } = recordingLogger();
    const old = await fakeServer([1]);
    const fallback = sessionFor(old.url, logger);
    try {
      fallback.send(health('a'));
      // A failed object's code is version 2: a v1 server would close the session for it.
      fallback.send({
        ...statusOf('a'),
        result: 'failed',
        changes: [{ id: 'ConfigMap/default/x', action: 'failed', error: 'cycle', code: 'DEPENDS_ON_CYCLE' }],
      });
      fallback.start();
      await until('status after the fallback', () => ofType(old.frames, 'status').length === 1);
      await until('the server version', () => fallback.serverProtocolVersion !== undefined);
      expect(fallback.serverProtocolVersion).toBe(1);
      expect(ofType(old.frames, 'hello').map((h) => h.protocolVersion)).toEqual([2, 1]);
      // Sent after the refused v2 hello, so unread there: sent again, as version 1 has it.
      expect(ofType(old.frames, 'status')).toHaveLength(1);
      expect(ofType(old.frames, 'status')[0].changes).toEqual([
        { id: 'ConfigMap/default/x', action: 'failed', error: 'cycle' },
      ]);
      // Connected to a v1 server: health is dropped, the status after it still goes.
      fallback.send(health('b', 'degraded'));
      fallback.send(statusOf('b'));
      await until('the second status', () => ofType(old.frames, 'status').length === 2);
      expect(ofType(old.frames, 'health')).toEqual([]);
      expect(fallback.buffered).toBe(0);
      expect(lines.filter((l) => l.msg.includes('older protocol') && l.level === 'warn')).toHaveLength(1);
      expect(lines.filter((l) => l.msg.startsWith('health not sent')).length).toBeGreaterThanOrEqual(2);
    } finally {
      await fallback.stop();
      await old.close();
    }
  });

  it('logs the fallback to version 1 once, and asks for 2 again after the server went away', async () => {
    const old = await fakeServer([1]);
    const { logger, lines } = recordingLogger();
    const session = sessionFor(old.url, logger);
    try {
      session.start();
      await until('a v1 session', () => session.serverProtocolVersion === 1);
      // The server restarts (maybe upgraded): GOING_AWAY, then the agent tries 2 first again.
      old.sockets.at(-1)!.close(CloseCode.GOING_AWAY, 'server shutting down');
      await until(
        'a second v1 session',
        () => ofType(old.frames, 'hello').length === 4 && session.serverProtocolVersion === 1,
      );
      expect(ofType(old.frames, 'hello').map((h) => h.protocolVersion)).toEqual([2, 1, 2, 1]);
      const fallbacks = lines.filter((l) => l.msg.includes('older protocol'));
      expect(fallbacks.map((l) => l.level)).toEqual(['warn', 'debug']);
    } finally {
      await session.stop();
      await old.close();
    }
  });
});
