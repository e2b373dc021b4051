/**
 * The agent's WebSocket session against small loopback servers that misbehave on purpose:
 * refused upgrades, revocation, invalid frames, silent peers. (The full server is exercised in
 * run.test.ts; these pin down the client's reactions one by one.)
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { createLogger } from '../../src/common/logger.js';
import { signAgentJwt, verifyAgentJwt, ReplayCache } from '../../src/protocol/jwt.js';
import { generateToken } from '../../src/protocol/token.js';
import {
  CloseCode,
  CONNECT_PATH,
  decodeAgentMessage,
  encodeMessage,
  type AgentMessage,
  type ServerMessage,
} from '../../src/protocol/messages.js';
import { Session, type SessionOptions } from '../../src/agent/session.js';
import type { ConnectionState } from '../../src/agent/metrics.js';
import { waitFor } from '../harness/wait.js';

const token = generateToken();
const fast = { baseMs: 20, capMs: 50, minMs: 10 };

interface TestServer {
  url: string;
  upgrades: number;
  received: AgentMessage[];
  sockets: WebSocket[];
  close(): Promise<void>;
}

/** A WebSocket server that authenticates like gitops-server and lets the test script each session. */
async function startServer(
  onSession: (ws: WebSocket, n: number) => void,
  refuse?: (n: number) => number | undefined,
): Promise<TestServer> {
  const wss = new WebSocketServer({ noServer: true });
  const http1 = http.createServer();
  const replayCache = new ReplayCache();
  const state: TestServer = { url: '', upgrades: 0, received: [], sockets: [], close: async () => undefined };
  http1.on('upgrade', (req, socket, head) => {
    const n = ++state.upgrades;
    const status = refuse?.(n);
    const jwt = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    void verifyAgentJwt(jwt, {
      audience: 'test-server',
      lookupKey: () => ({ publicKey: token.publicKey, revoked: false }),
      replayCache,
    })
      .then(() => {
        if (status) throw new Error('refused');
        wss.handleUpgrade(req, socket, head, (ws) => {
          state.sockets.push(ws);
          ws.on('message', (d) => {
            const m = decodeAgentMessage(d.toString());
            if (m.ok) state.received.push(m.message);
          });
          onSession(ws, n);
        });
      })
      .catch(() => {
        socket.write(`HTTP/1.1 ${status ?? 401} Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        socket.destroy();
      });
  });
  await new Promise<void>((r) => http1.listen(0, '127.0.0.1', r));
  state.url = `ws://127.0.0.1:${(http1.address() as AddressInfo).port}${CONNECT_PATH}`;
  state.close = async () => {
    for (const ws of wss.clients) ws.terminate();
    http1.closeAllConnections();
    await new Promise((r) => http1.close(r));
  };
  return state;
}

const sessions: Session[] = [];
const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.stop()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function startSession(
  url: string,
  extra: Partial<SessionOptions> = {},
): { session: Session; states: ConnectionState[]; got: ServerMessage[] } {
  const states: ConnectionState[] = [];
  const got: ServerMessage[] = [];
  const session = new Session({
    url,
    signJwt: () => signAgentJwt(token, { audience: 'test-server' }),
    agentVersion: '0.1.0-test',
    applied: () => ({ 'gitops-project': { commit: 'a'.repeat(40), digest: 'sha256:a' } }),
    logger: createLogger({ level: 'silent' }),
    onConfig: (m) => {
      got.push(m);
    },
    onDesired: (m) => {
      got.push(m);
    },
    onError: (m) => {
      got.push(m);
    },
    onState: (s) => states.push(s),
    reconnect: fast,
    slowReconnect: { baseMs: 60_000, capMs: 60_000, minMs: 60_000 },
    ...extra,
  });
  sessions.push(session);
  session.start();
  return { session, states, got };
}

const configMessage: ServerMessage = {
  type: 'config',
  settings: { drift: { mode: 'correct', ignore: [] } },
  projects: ['gitops-project'],
  errors: [],
};

describe('agent session', () => {
  it('authenticates with a fresh JWT per attempt, says hello with the commits it has and reconnects after a drop', async () => {
    const server = await startServer((ws, n) => {
      ws.send(encodeMessage(configMessage));
      if (n === 1) setTimeout(() => ws.close(CloseCode.GOING_AWAY, 'restart'), 20);
    });
    servers.push(server);
    const { got, session } = startSession(server.url);
    await waitFor(() => server.upgrades >= 2 && session.connected, 5000, 'a second connection');
    const hellos = server.received.filter((m) => m.type === 'hello');
    expect(hellos[0]).toEqual({
      type: 'hello',
      protocolVersion: 2,
      agentVersion: '0.1.0-test',
      applied: { 'gitops-project': { commit: 'a'.repeat(40), digest: 'sha256:a' } },
    });
    await waitFor(() => got.length >= 2, 2000, 'config twice');
    expect(got[0]).toEqual(configMessage);
  });

  it('buffers reports while disconnected and sends them once connected, newest status per project only', async () => {
    let accept = false;
    const server = await startServer(
      () => undefined,
      () => (accept ? undefined : 503),
    );
    servers.push(server);
    const { session } = startSession(server.url);
    const status = (c: string) => ({
      type: 'status' as const,
      project: 'gitops-project',
      commit: c.repeat(40),
      digest: c,
      result: 'applied' as const,
      changes: [],
      errors: [],
      durationMs: 1,
    });
    session.send(status('a'));
    session.send({
      type: 'drift',
      project: 'gitops-project',
      commit: 'a'.repeat(40),
      object: 'Deployment/default/nginx',
      action: 'reverted',
      patch: [],
      at: new Date().toISOString(),
    });
    session.send(status('b'));
    expect(session.buffered).toBe(2);
    accept = true;
    await waitFor(() => server.received.length >= 3, 5000, 'reports after hello');
    expect(server.received.map((m) => m.type)).toEqual(['hello', 'drift', 'status']);
    expect((server.received[2] as { commit: string }).commit).toBe('b'.repeat(40));
  });

  it('retries slowly after a 401 at the upgrade instead of hammering the server', async () => {
    const server = await startServer(
      () => undefined,
      () => 401,
    );
    servers.push(server);
    const { states } = startSession(server.url);
    await waitFor(() => states.includes('unauthorized'), 3000, 'unauthorized state');
    await new Promise((r) => setTimeout(r, 300));
    expect(server.upgrades).toBe(1);
  });

  it('stops reconnecting for good when the server says the agent was revoked', async () => {
    const server = await startServer((ws) => setTimeout(() => ws.close(CloseCode.REVOKED, 'agent revoked'), 10));
    servers.push(server);
    const { states } = startSession(server.url);
    await waitFor(() => states.includes('revoked'), 3000, 'revoked state');
    await new Promise((r) => setTimeout(r, 200));
    expect(server.upgrades).toBe(1);
  });

  it('closes with INVALID_MESSAGE when the server sends something that is not a protocol message', async () => {
    const closes: number[] = [];
    const server = await startServer((ws, n) => {
      ws.on('close', (code) => closes.push(code));
      if (n === 1) ws.send(JSON.stringify({ type: 'desired', project: 'p', commit: 'not-a-sha' }));
    });
    servers.push(server);
    const { got } = startSession(server.url);
    await waitFor(() => closes.length >= 1, 3000, 'a close');
    expect(closes[0]).toBe(CloseCode.INVALID_MESSAGE);
    expect(got).toEqual([]);
  });

  it('drops a connection whose server went silent (no pongs) and connects again', async () => {
    // A server that completes the WebSocket handshake by hand and then never answers anything.
    const silent = http.createServer();
    let upgrades = 0;
    const raw: Array<{ destroy(): void }> = [];
    silent.on('upgrade', (req, socket) => {
      upgrades++;
      raw.push(socket);
      const accept = createHash('sha1')
        .update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest('base64');
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
      );
      socket.on('data', () => undefined);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    servers.push({
      url: '',
      upgrades: 0,
      received: [],
      sockets: [],
      close: async () => {
        for (const s of raw) s.destroy();
        await new Promise((r) => silent.close(r));
      },
    });
    const started = Date.now();
    startSession(`ws://127.0.0.1:${(silent.address() as AddressInfo).port}${CONNECT_PATH}`, {
      pingIntervalMs: 50,
      deadAfterMs: 300,
    });
    await waitFor(() => upgrades >= 2, 5000, 'a reconnect after the dead peer was dropped');
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  });
});
