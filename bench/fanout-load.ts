/**
 * The fan-out load process (a child of bench/run.js, so the agents' side never shares a CPU
 * queue or event loop with the measuring process): K real WebSocket connections over TLS, each
 * authenticated as its own agent with a JWT signed from that agent's real token, each speaking
 * the protocol (hello, then a status after every desired). It reports, per agent, when each
 * commit's `desired` arrived.
 *
 * IPC: parent → `{type:'start', ...}`, later `{type:'expect', commit}`; child → `progress`,
 * `ready` (every agent connected and holding the first desired state), `done` (arrival times of
 * the expected commit). The child exits when the IPC channel closes (the parent died or finished).
 */
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { signAgentJwt } from '../src/protocol/jwt.js';
import { PROTOCOL_VERSION } from '../src/protocol/messages.js';
import { nowMs } from './lib/stats.js';

export interface LoadStart {
  type: 'start';
  connectUrl: string;
  caPath: string;
  tokensFile: string;
  audience: string;
  /** Handshakes in flight at once. */
  concurrency: number;
}

export type LoadReport =
  | { type: 'progress'; connected: number; withDesired: number; failed: number }
  | { type: 'ready'; connected: number; failed: number; connectSeconds: number; errors: string[] }
  | { type: 'done'; arrivals: number[]; missing: number };

interface Agent {
  ws?: WebSocket;
  /** commit → arrival time of its desired message. */
  arrivals: Map<string, number>;
}

const send = (m: LoadReport): void => {
  process.send?.(m);
};

async function run(start: LoadStart): Promise<void> {
  const tokens = JSON.parse(readFileSync(start.tokensFile, 'utf8')) as string[];
  const ca = readFileSync(start.caPath, 'utf8');
  const agents: Agent[] = tokens.map(() => ({ arrivals: new Map() }));
  let connected = 0;
  let failed = 0;
  let withDesired = 0;
  const errors: string[] = [];
  let expect: string | undefined;
  let onArrival: (() => void) | undefined;

  const connect = async (i: number): Promise<void> => {
    const agent = agents[i];
    const jwt = await signAgentJwt(tokens[i], { audience: start.audience, ttlSeconds: 300 });
    await new Promise<void>((resolve) => {
      const ws = new WebSocket(start.connectUrl, {
        ca,
        headers: { authorization: `Bearer ${jwt}` },
        perMessageDeflate: false,
        handshakeTimeout: 60_000,
      });
      agent.ws = ws;
      ws.once('open', () => {
        connected++;
        ws.send(
          JSON.stringify({ type: 'hello', protocolVersion: PROTOCOL_VERSION, agentVersion: 'bench-load', applied: {} }),
        );
        resolve();
      });
      ws.once('error', (err) => {
        failed++;
        if (errors.length < 5) errors.push(err.message);
        resolve();
      });
      ws.on('message', (data) => {
        const at = nowMs();
        const text = data.toString();
        if (!text.startsWith('{"type":"desired"')) return;
        const m = JSON.parse(text) as { project: string; commit: string; digest: string };
        if (agent.arrivals.size === 0) withDesired++;
        agent.arrivals.set(m.commit, at);
        ws.send(
          JSON.stringify({
            type: 'status',
            project: m.project,
            commit: m.commit,
            digest: m.digest,
            result: 'applied',
            changes: [],
            errors: [],
            durationMs: 1,
          }),
        );
        if (expect === m.commit) onArrival?.();
      });
    });
  };

  const t0 = performance.now();
  const ticker = setInterval(() => send({ type: 'progress', connected, withDesired, failed }), 2000);
  let next = 0;
  await Promise.all(
    Array.from({ length: start.concurrency }, async () => {
      while (next < agents.length) await connect(next++);
    }),
  );
  // Every agent holds the first desired state (or gave up) before the parent commits.
  const deadline = Date.now() + 120_000;
  while (withDesired + failed < agents.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  clearInterval(ticker);
  send({ type: 'ready', connected, failed, connectSeconds: (performance.now() - t0) / 1000, errors });

  process.on('message', (m: { type: string; commit?: string; timeoutMs?: number }) => {
    if (m.type !== 'expect' || !m.commit) return;
    expect = m.commit;
    const commit = m.commit;
    const have = (): number => agents.filter((a) => a.arrivals.has(commit)).length;
    const finish = (): void => {
      onArrival = undefined;
      clearTimeout(timer);
      const arrivals = agents.map((a) => a.arrivals.get(commit)).filter((t): t is number => t !== undefined);
      send({ type: 'done', arrivals, missing: agents.length - arrivals.length });
    };
    const timer = setTimeout(finish, m.timeoutMs ?? 60_000);
    let count = have();
    if (count >= connected) return finish();
    onArrival = () => {
      if (++count >= connected) finish();
    };
  });
}

process.on('disconnect', () => process.exit(0));
process.once('message', (m: LoadStart) => {
  if (m.type === 'start')
    run(m).catch((err: unknown) => {
      process.stderr.write(`fanout-load: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    });
});
