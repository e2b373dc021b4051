// The agent's session against a plain ws server that enforces the server's inbound limit: a report
// too big for it is sent shortened, with the totals, instead of being cut off with 1009.
import { describe, expect, it } from '@jest/globals';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { silentLogger } from '../common/logger.js';
import { MAX_AGENT_MESSAGE_BYTES, decodeAgentMessage, type StatusMessage } from '../protocol/messages.js';
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
    const warnings: string[] = [];
    const logger = {
      ...silentLogger(),
      warn: (_f: unknown, msg?: string) => {
        warnings.push(String(msg));
      },
    } as unknown as ReturnType<typeof silentLogger>;
    const session = new Session({
      url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/api/v1/agent/connect`,
      signJwt: async () => 'jwt',
      agentVersion: 'test',
      applied: () => ({}),
      logger,
      onConfig: () => undefined,
      onDesired: () => undefined,
      onError: () => undefined,
    });
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
      expect(warnings).toContain('report too big for the server: sending a shortened one with the totals');
    } finally {
      await session.stop();
      await new Promise((r) => wss.close(r));
    }
  });
});
