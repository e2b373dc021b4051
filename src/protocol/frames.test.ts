import { describe, expect, it } from '@jest/globals';
import { decodeFrame } from './frames.js';
import { PROTOCOL_VERSION, decodeAgentMessage, decodeServerMessage } from './messages.js';

const hello = JSON.stringify({ type: 'hello', protocolVersion: PROTOCOL_VERSION, agentVersion: '1.0.0', applied: {} });
const error = JSON.stringify({ type: 'error', problems: [] });

describe('decodeFrame', () => {
  it.each([
    ['a Buffer', Buffer.from(hello)],
    ['fragments', [Buffer.from(hello.slice(0, 5)), Buffer.from(hello.slice(5))]],
    ['an ArrayBuffer', new Uint8Array(Buffer.from(hello)).buffer],
  ])('decodes a text frame given as %s', (_name, data) => {
    expect(decodeFrame(data, false, decodeAgentMessage)).toMatchObject({ ok: true, message: { type: 'hello' } });
  });

  it('refuses a binary frame, and a message of the other side', () => {
    expect(decodeFrame(Buffer.from(hello), true, decodeAgentMessage)).toMatchObject({ ok: false, kind: 'binary' });
    expect(decodeFrame(Buffer.from(error), false, decodeServerMessage)).toMatchObject({
      ok: true,
      message: { type: 'error' },
    });
    expect(decodeFrame(Buffer.from(error), false, decodeAgentMessage)).toMatchObject({ ok: false, kind: 'invalid' });
    expect(decodeFrame(Buffer.from('{"type":'), false, decodeServerMessage)).toMatchObject({
      ok: false,
      kind: 'invalid',
      error: expect.stringMatching(/^not JSON/),
    });
  });
});
