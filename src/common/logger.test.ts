import { describe, expect, it } from '@jest/globals';
import { Writable } from 'node:stream';
import { createLogger } from './logger.js';

function capture(): { stream: Writable; lines: () => string[] } {
  const chunks: string[] = [];
  const stream = new Writable({ write(c: Buffer, _e, done) { chunks.push(c.toString()); done(); } });
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
    expect(out.lines().map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['shown at debug', 'sync shown at debug', 'shown at warn']);
  });

  it('prints a readable line in text format', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream, format: 'text' });
    log.info({ agent: 'agent1' }, 'agent connected');
    expect(out.lines()[0]).toMatch(/INFO agent connected agent=agent1$/);
  });
});
