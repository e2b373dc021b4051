/**
 * A scripted agent for server tests: signs a JWT with the real protocol code, connects with the
 * `ws` package over TLS, and queues every server message so a test can wait for the next one of a
 * type. Also small helpers to POST webhooks and to try an upgrade and see its HTTP status.
 */
import https from 'node:https';
import WebSocket from 'ws';
import { signAgentJwt } from '../../src/protocol/jwt.js';
import {
  PROTOCOL_VERSION,
  decodeServerMessage,
  encodeMessage,
  type AgentMessage,
  type ServerMessage,
} from '../../src/protocol/messages.js';

export interface TestClient {
  ws: WebSocket;
  messages: ServerMessage[];
  /** Every frame as it arrived (to check it against an older, stricter schema). */
  raw: string[];
  /** The next message of `type` not yet taken (waits up to `timeoutMs`). */
  next<T extends ServerMessage['type']>(type: T, timeoutMs?: number): Promise<Extract<ServerMessage, { type: T }>>;
  /** Messages of `type` arriving within `ms` (for "nothing is sent" checks). */
  collect(type: ServerMessage['type'], ms: number): Promise<ServerMessage[]>;
  send(message: AgentMessage): void;
  closed: Promise<{ code: number; reason: string; at: number }>;
}

export async function connectClient(
  url: string,
  ca: string | undefined,
  authorization: string,
  hello?: Partial<Extract<AgentMessage, { type: 'hello' }>>,
): Promise<TestClient> {
  const ws = new WebSocket(url, { ca, headers: { authorization } });
  const messages: ServerMessage[] = [];
  const raw: string[] = [];
  const taken = new Set<ServerMessage>();
  const waiters = new Set<() => void>();
  ws.on('message', (data) => {
    raw.push(data.toString());
    const decoded = decodeServerMessage(data.toString());
    if (!decoded.ok) throw new Error(`server sent an invalid message: ${decoded.error}`);
    messages.push(decoded.message);
    for (const w of waiters) w();
  });
  const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() })),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
  const send = (message: AgentMessage): void => ws.send(encodeMessage(message));
  send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, agentVersion: 'test', applied: {}, ...hello });
  const find = <T extends ServerMessage['type']>(type: T): Extract<ServerMessage, { type: T }> | undefined => {
    const m = messages.find((x) => x.type === type && !taken.has(x));
    if (m) taken.add(m);
    return m as Extract<ServerMessage, { type: T }> | undefined;
  };
  return {
    ws,
    messages,
    raw,
    send,
    closed,
    next(type, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const hit = find(type);
        if (hit) return resolve(hit);
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${type} message within ${timeoutMs}ms; got ${messages.map((m) => m.type).join(',')}`));
        }, timeoutMs);
        const check = (): void => {
          const m = find(type);
          if (m) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(m);
          }
        };
        waiters.add(check);
      });
    },
    async collect(type, ms) {
      const before = messages.length;
      await new Promise((r) => setTimeout(r, ms));
      return messages.slice(before).filter((m) => m.type === type);
    },
  };
}

/** Connects with a fresh JWT from the token. */
export async function connectWithToken(
  url: string,
  ca: string | undefined,
  token: string,
  audience: string,
  hello?: Partial<Extract<AgentMessage, { type: 'hello' }>>,
): Promise<TestClient> {
  return connectClient(url, ca, `Bearer ${await signAgentJwt(token, { audience })}`, hello);
}

/** The HTTP status of an upgrade attempt with this Authorization header (101 when accepted). */
export function upgradeStatus(url: string, ca: string | undefined, authorization: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ca, headers: authorization ? { authorization } : {} });
    ws.once('open', () => {
      ws.terminate();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      ws.terminate();
      resolve(res.statusCode ?? 0);
    });
    ws.once('error', (err) => reject(err));
  });
}

/** POST a JSON body over HTTPS trusting `ca`; resolves to the status code. */
export function post(
  url: string,
  ca: string | undefined,
  headers: Record<string, string>,
  body: string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      { method: 'POST', ca, headers: { 'content-type': 'application/json', ...headers } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
