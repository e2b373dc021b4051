import { describe, expect, it } from '@jest/globals';
import { Writable } from 'node:stream';
import { createLogger } from './logger.js';

function capture(): { stream: Writable; lines: () => string[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(c: Buffer, _e, done) {
      chunks.push(c.toString());
      done();
    },
  });
  return { stream, lines: () => chunks.join('').split('\n').filter(Boolean) };
}

describe('createLogger', () => {
  it('writes one JSON object per line with a constant message and the fields beside it', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream });
    log.info({ commit: 'abc123', project: 'gitops-project' }, 'detected commit');
    const rec = JSON.parse(out.lines()[0]) as Record<string, unknown>;
    expect(rec).toMatchObject({ level: 'info', msg: 'detected commit', commit: 'abc123', project: 'gitops-project' });
  });

  it('never prints a token or authorization header even when a caller passes one', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream });
    log.warn({ token: 'glagent-secret', headers: { authorization: 'Bearer eyJ' } }, 'auth failed');
    const line = out.lines()[0];
    expect(line).not.toContain('glagent-secret');
    expect(line).not.toContain('eyJ');
  });

  it('applies a level change on the root to child loggers created before it, both ways', () => {
    const out = capture();
    const root = createLogger({ destination: out.stream, level: 'info' });
    const sync = root.child({ component: 'sync' });
    const perProject = sync.child({ project: 'gitops-project' });
    perProject.debug('hidden at info');
    root.level = 'debug';
    perProject.debug('shown at debug');
    sync.debug('sync shown at debug');
    root.level = 'warn';
    perProject.info('hidden at warn');
    perProject.warn('shown at warn');
    expect(out.lines().map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual([
      'shown at debug',
      'sync shown at debug',
      'shown at warn',
    ]);
  });

  it('prints a readable line in text format', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream, format: 'text' });
    log.info({ agent: 'agent1' }, 'agent connected');
    expect(out.lines()[0]).toMatch(/INFO agent connected agent=agent1$/);
  });
});

describe('text format with agent-supplied strings', () => {
  const forged = 'agent1\n2026-01-01T00:00:00.000Z INFO agent connected agent=admin';
  it.each([
    [
      'a newline that would start a forged line',
      forged,
      '"agent1\\n2026-01-01T00:00:00.000Z INFO agent connected agent=admin"',
    ],
    ['a terminal escape (ESC [ 2 J clears the screen)', 'x\u001b[2Jy', '"x\\u001b[2Jy"'],
    ['an 8-bit CSI and DEL', 'x\u009b31my\u007f', '"x\\u009b31my\\u007f"'],
    ['a Unicode line separator', 'a\u2028b', '"a\\u2028b"'],
    ['a carriage return that would overwrite the line', 'ok\rFATAL', '"ok\\rFATAL"'],
    ['a space and = that would add a field', 'x level=fatal', '"x level=fatal"'],
    ['a quote', 'say "hi"', '"say \\"hi\\""'],
    ['an empty string', '', '""'],
    ['nothing in a plain word (left bare)', 'agent-1.example/x', 'agent-1.example/x'],
  ])('escapes %s', (_what, value, shown) => {
    const out = capture();
    createLogger({ destination: out.stream, format: 'text' }).warn({ agent: value, n: 1 }, 'status refused');
    expect(out.lines()).toHaveLength(1);
    expect(out.lines()[0]).toMatch(/WARN status refused agent=/);
    expect(out.lines()[0].endsWith(` agent=${shown} n=1`)).toBe(true);
    expect(out.lines()[0]).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
  });

  it('escapes nested values, keys and the message too', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream, format: 'text' });
    log.warn({ problem: { message: 'bad\u001b]0;owned\u0007 \u0085' }, ['k\ney']: 1 }, 'problem\nFATAL forged');
    const [line, ...more] = out.lines();
    expect(more).toEqual([]);
    expect(line).toContain('problem\\nFATAL forged');
    expect(line).toContain('problem={"message":"bad\\u001b]0;owned\\u0007 \\u0085"}');
    expect(line).toContain('"k\\ney"=1');
    expect(line).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  });
});
