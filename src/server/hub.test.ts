import { describe, expect, it } from '@jest/globals';
import { CloseCode, PROTOCOL_VERSION, decodeServerMessage, type ConfigMessage } from '../protocol/messages.js';
import { configFor, judgeFrame, statusProblems } from './hub.js';

/** judgeFrame's phase: before hello, after a v1 hello, after a v2 hello. */
const BEFORE_HELLO = 0;
const V1 = 1;
const V2 = 2;

const hello = JSON.stringify({ type: 'hello', protocolVersion: PROTOCOL_VERSION, agentVersion: '1.0.0', applied: {} });
const status = JSON.stringify({
  type: 'status',
  project: 'p',
  commit: 'a'.repeat(40),
  digest: 'd',
  result: 'applied',
  changes: [],
  errors: [],
  durationMs: 1,
});
const health = JSON.stringify({
  type: 'health',
  project: 'p',
  commit: 'a'.repeat(40),
  digest: 'd',
  result: 'degraded',
  objects: [{ id: 'Deployment/default/nginx', state: 'failed', reason: 'CrashLoopBackOff', message: 'back-off' }],
  waitedMs: 1200,
});

describe('judgeFrame', () => {
  it('accepts hello of version 1 or 2 first, reports after it, and health only after a v2 hello', () => {
    expect(judgeFrame(Buffer.from(hello), false, BEFORE_HELLO)).toMatchObject({ ok: true, message: { type: 'hello' } });
    const v1Hello = JSON.stringify({ ...JSON.parse(hello), protocolVersion: 1 });
    expect(judgeFrame(Buffer.from(v1Hello), false, BEFORE_HELLO)).toMatchObject({ ok: true });
    expect(judgeFrame(Buffer.from(status), false, V1)).toMatchObject({ ok: true, message: { type: 'status' } });
    expect(judgeFrame(Buffer.from(status), false, V2)).toMatchObject({ ok: true, message: { type: 'status' } });
    expect(judgeFrame(Buffer.from(health), false, V2)).toMatchObject({ ok: true, message: { type: 'health' } });
  });

  it('refuses a status change code from a session whose hello said version 1, and takes it from a v2 one', () => {
    const coded = JSON.stringify({
      ...JSON.parse(status),
      result: 'failed',
      changes: [{ id: 'ConfigMap/default/a', action: 'failed', error: 'cycle', code: 'DEPENDS_ON_CYCLE' }],
    });
    expect(judgeFrame(Buffer.from(coded), false, V1)).toMatchObject({ ok: false, code: CloseCode.INVALID_MESSAGE });
    expect(judgeFrame(Buffer.from(coded), false, V2)).toMatchObject({ ok: true });
  });

  it('refuses health from a session whose hello said version 1', () => {
    const verdict = judgeFrame(Buffer.from(health), false, V1);
    expect(verdict).toMatchObject({ ok: false, code: CloseCode.INVALID_MESSAGE, metric: 'version' });
    if (!verdict.ok) expect(verdict.reason).toBe("health needs protocol 2; this session's hello said 1");
  });

  it.each([
    ['text that is not JSON', '{"type":', false, BEFORE_HELLO],
    ['an unknown message type', JSON.stringify({ type: 'exec', cmd: 'rm -rf /' }), false, V2],
    ['a known type with an extra field', JSON.stringify({ ...JSON.parse(status), extra: 1 }), false, V2],
    ['a report before hello', status, false, BEFORE_HELLO],
    ['a second hello', hello, false, V2],
    ['a binary frame', hello, true, BEFORE_HELLO],
    [
      'a status whose project key is over 255 characters',
      JSON.stringify({ ...JSON.parse(status), project: 'p'.repeat(256) }),
      false,
      V2,
    ],
    [
      'a status with more than 10,000 changes',
      JSON.stringify({
        ...JSON.parse(status),
        changes: Array.from({ length: 10_001 }, () => ({ id: 'a', action: 'created' })),
      }),
      false,
      V2,
    ],
    [
      'a health with 10,001 objects',
      JSON.stringify({
        ...JSON.parse(health),
        objects: Array.from({ length: 10_001 }, () => ({ id: 'a', state: 'current' })),
      }),
      false,
      V2,
    ],
    [
      'a health with an unknown state',
      JSON.stringify({ ...JSON.parse(health), objects: [{ id: 'a', state: 'ok' }] }),
      false,
      V2,
    ],
    ['a health with an unknown result', JSON.stringify({ ...JSON.parse(health), result: 'fine' }), false, V2],
    ['a health whose waitedMs is a string', JSON.stringify({ ...JSON.parse(health), waitedMs: '5' }), false, V2],
    [
      'a health whose reason is over 256 characters',
      JSON.stringify({ ...JSON.parse(health), objects: [{ id: 'a', state: 'failed', reason: 'r'.repeat(257) }] }),
      false,
      V2,
    ],
    [
      'a health whose message is over 4096 characters',
      JSON.stringify({ ...JSON.parse(health), objects: [{ id: 'a', state: 'failed', message: 'm'.repeat(4097) }] }),
      false,
      V2,
    ],
    ['a health before hello', health, false, BEFORE_HELLO],
  ])('closes with INVALID_MESSAGE on %s', (_name, text, binary, helloVersion) => {
    const verdict = judgeFrame(Buffer.from(text), binary, helloVersion);
    expect(verdict).toMatchObject({ ok: false, code: CloseCode.INVALID_MESSAGE });
  });

  it('closes with VERSION_MISMATCH and says which versions, within the 123-byte close reason limit', () => {
    const verdict = judgeFrame(
      Buffer.from(JSON.stringify({ ...JSON.parse(hello), protocolVersion: 99 })),
      false,
      BEFORE_HELLO,
    );
    expect(verdict).toMatchObject({ ok: false, code: CloseCode.VERSION_MISMATCH });
    if (!verdict.ok) expect(verdict.reason).toBe('server speaks protocol 1 or 2, agent sent 99');
    const long = judgeFrame(Buffer.from(JSON.stringify({ type: 'x'.repeat(500) })), false, V2);
    if (!long.ok) expect(Buffer.byteLength(long.reason)).toBeLessThanOrEqual(123);
  });
});

describe('configFor', () => {
  const config: ConfigMessage = {
    type: 'config',
    settings: { drift: { mode: 'correct', ignore: [] } },
    projects: ['p'],
    errors: [],
  };

  it('tells a v2 session the server speaks 2, and gives a v1 session a frame its strict schema takes', () => {
    expect(configFor(V2, config)).toEqual({ ...config, protocolVersion: 2 });
    expect(configFor(V1, { ...config, protocolVersion: 2 })).toEqual(config);
    expect(Object.keys(configFor(V1, config))).not.toContain('protocolVersion');
    expect(decodeServerMessage(JSON.stringify(configFor(PROTOCOL_VERSION, config)))).toMatchObject({ ok: true });
  });
});

describe('statusProblems', () => {
  it('names each failed object with its own code (v2), APPLY_FAILED when the agent gave none (v1)', () => {
    const problems = statusProblems({
      ...(JSON.parse(status) as Parameters<typeof statusProblems>[0]),
      result: 'failed',
      changes: [
        { id: 'ConfigMap/default/a', action: 'failed', error: 'a -> b -> a', code: 'DEPENDS_ON_CYCLE' },
        { id: 'ConfigMap/default/c', action: 'failed', error: 'refused' },
        { id: 'ConfigMap/default/d', action: 'created' },
      ],
    });
    expect(problems?.problems).toEqual([
      { code: 'DEPENDS_ON_CYCLE', message: 'a -> b -> a', object: 'ConfigMap/default/a' },
      { code: 'APPLY_FAILED', message: 'refused', object: 'ConfigMap/default/c' },
    ]);
  });
});
