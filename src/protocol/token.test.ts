import { describe, expect, it } from '@jest/globals';
import { sign, verify } from 'node:crypto';
import { TOKEN_PATTERN, TOKEN_PREFIX, generateToken, parseToken, publicKeyFromX } from './token.js';

describe('agent tokens', () => {
  it('carry a prefix secret scanners can match and round-trip the agent id and key', () => {
    const gen = generateToken();
    expect(gen.token.startsWith(TOKEN_PREFIX)).toBe(true);
    expect(gen.token).toMatch(TOKEN_PATTERN);
    const parsed = parseToken(`  ${gen.token}\n`);
    expect(parsed.agentId).toBe(gen.agentId);
    const sig = sign(null, Buffer.from('hello'), parsed.privateKey);
    expect(verify(null, Buffer.from('hello'), publicKeyFromX(gen.publicKeyX), sig)).toBe(true);
  });

  it('differ each time and never reuse a key', () => {
    const a = generateToken();
    const b = generateToken();
    expect(a.token).not.toBe(b.token);
    expect(a.publicKeyX).not.toBe(b.publicKeyX);
  });

  it.each([
    ['a foreign string', 'glagent-abcdef', 'TOKEN_BAD_PREFIX'],
    ['a truncated token', 'TRUNC', 'TOKEN_BAD_LENGTH'],
    ['a mistyped token', 'TYPO', 'TOKEN_BAD_CHECKSUM'],
  ])('rejects %s with a clear error that does not echo the token', (_name, kind, code) => {
    const good = generateToken().token;
    const bad =
      kind === 'TRUNC'
        ? good.slice(0, -3)
        : kind === 'TYPO'
          ? good.slice(0, 20) + (good[20] === 'A' ? 'B' : 'A') + good.slice(21)
          : kind;
    let caught: unknown;
    try {
      parseToken(bad);
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code });
    const message = (caught as Error).message;
    expect(message).not.toContain(bad.slice(TOKEN_PREFIX.length, TOKEN_PREFIX.length + 10) || '\u0000');
  });
});
