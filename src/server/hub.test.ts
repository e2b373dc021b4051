import { describe, expect, it } from '@jest/globals';
import { CloseCode, PROTOCOL_VERSION } from '../protocol/messages.js';
import { judgeFrame } from './hub.js';

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

describe('judgeFrame', () => {
  it('accepts hello first and reports after it', () => {
    expect(judgeFrame(Buffer.from(hello), false, false)).toMatchObject({ ok: true, message: { type: 'hello' } });
    expect(judgeFrame(Buffer.from(status), false, true)).toMatchObject({ ok: true, message: { type: 'status' } });
  });

  it.each([
    ['text that is not JSON', '{"type":', false, false],
    ['an unknown message type', JSON.stringify({ type: 'exec', cmd: 'rm -rf /' }), false, true],
    ['a known type with an extra field', JSON.stringify({ ...JSON.parse(status), extra: 1 }), false, true],
    ['a report before hello', status, false, false],
    ['a second hello', hello, false, true],
    ['a binary frame', hello, true, false],
    [
      'a status whose project key is over 255 characters',
      JSON.stringify({ ...JSON.parse(status), project: 'p'.repeat(256) }),
      false,
      true,
    ],
    [
      'a status with more than 10,000 changes',
      JSON.stringify({
        ...JSON.parse(status),
        changes: Array.from({ length: 10_001 }, () => ({ id: 'a', action: 'created' })),
      }),
      false,
      true,
    ],
  ])('closes with INVALID_MESSAGE on %s', (_name, text, binary, helloDone) => {
    const verdict = judgeFrame(Buffer.from(text), binary, helloDone);
    expect(verdict).toMatchObject({ ok: false, code: CloseCode.INVALID_MESSAGE });
  });

  it('closes with VERSION_MISMATCH and says which versions, within the 123-byte close reason limit', () => {
    const verdict = judgeFrame(
      Buffer.from(JSON.stringify({ ...JSON.parse(hello), protocolVersion: 99 })),
      false,
      false,
    );
    expect(verdict).toMatchObject({ ok: false, code: CloseCode.VERSION_MISMATCH });
    if (!verdict.ok) {
      expect(verdict.reason).toContain(`protocol ${PROTOCOL_VERSION}`);
      expect(verdict.reason).toContain('99');
    }
    const long = judgeFrame(Buffer.from(JSON.stringify({ type: 'x'.repeat(500) })), false, true);
    if (!long.ok) expect(Buffer.byteLength(long.reason)).toBeLessThanOrEqual(123);
  });
});
