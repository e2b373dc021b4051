import { describe, expect, it } from '@jest/globals';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { createLogger } from './logger.js';
import {
  describeThrown,
  installProcessGuards,
  installStopSignals,
  STOP_SIGNALS,
  type GuardedProcess,
  type SignalTarget,
  type StopSignal,
} from './process-guards.js';
import { UserError } from './errors.js';

function setup(options: { logsPerWindow?: number; windowMs?: number } = {}) {
  const chunks: string[] = [];
  const stream = new Writable({
    write(c: Buffer, _e, done) {
      chunks.push(c.toString());
      done();
    },
  });
  const logger = createLogger({ destination: stream, level: 'info' });
  const target = new EventEmitter();
  const exits: number[] = [];
  let clock = 0;
  const guards = installProcessGuards({
    logger,
    target: target as unknown as GuardedProcess,
    exit: (c) => exits.push(c),
    now: () => clock,
    ...options,
  });
  const lines = (): Record<string, unknown>[] =>
    chunks
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    target,
    guards,
    exits,
    lines,
    advance: (ms: number) => {
      clock += ms;
    },
  };
}

describe('installProcessGuards', () => {
  it('logs an unhandled rejection with a constant message, counts it, and does not exit', () => {
    const { target, guards, exits, lines } = setup();
    const counted: number[] = [];
    guards.countWith({ inc: (v = 1) => counted.push(v) });
    target.emit(
      'unhandledRejection',
      new UserError('GIT_BAD_PROJECT_ID', 'project "../../etc": segment 1 must start with a letter'),
    );
    expect(guards.rejections).toBe(1);
    expect(counted).toEqual([1]);
    expect(exits).toEqual([]);
    expect(lines()[0]).toMatchObject({
      level: 'error',
      msg: 'unhandled promise rejection',
      type: 'UserError',
      code: 'GIT_BAD_PROJECT_ID',
      err: expect.stringContaining('../../etc'),
      total: 1,
    });
    expect(lines()[0].stack).toEqual(expect.arrayContaining([expect.stringMatching(/^at /)]));
  });

  it('adds rejections seen before a counter was wired', () => {
    const { target, guards } = setup();
    target.emit('unhandledRejection', new Error('early'));
    target.emit('unhandledRejection', new Error('early'));
    const counted: number[] = [];
    guards.countWith({ inc: (v = 1) => counted.push(v) });
    target.emit('unhandledRejection', new Error('late'));
    expect(counted).toEqual([2, 1]);
  });

  it('logs at most N per window, then one line with how many it left out, and counts them all', () => {
    const { target, guards, lines, advance } = setup({ logsPerWindow: 3, windowMs: 1000 });
    for (let i = 0; i < 50; i++) target.emit('unhandledRejection', new Error(`e${i}`));
    expect(lines().filter((l) => l.msg === 'unhandled promise rejection')).toHaveLength(3);
    advance(1000);
    target.emit('unhandledRejection', new Error('next window'));
    expect(lines().find((l) => l.msg === 'unhandled promise rejections not logged')).toMatchObject({ suppressed: 47 });
    expect(lines().at(-1)).toMatchObject({ msg: 'unhandled promise rejection', err: 'next window' });
    expect(guards.rejections).toBe(51);
  });

  it('logs an uncaught exception and exits with status 1', () => {
    const { target, exits, lines } = setup();
    target.emit('uncaughtException', new TypeError('x is undefined'));
    expect(exits).toEqual([1]);
    expect(lines()[0]).toMatchObject({
      level: 'fatal',
      msg: 'uncaught exception; exiting',
      type: 'TypeError',
      err: 'x is undefined',
    });
  });

  it('removes its handlers on dispose', () => {
    const { target, guards } = setup();
    guards.dispose();
    expect(target.listenerCount('unhandledRejection') + target.listenerCount('uncaughtException')).toBe(0);
  });
});

describe('describeThrown', () => {
  it.each<[string, unknown, Record<string, unknown>]>([
    ['a string', 'plain string', { type: 'string', err: 'plain string' }],
    ['an object', { token: 'glagent-secret' }, { type: 'object', err: 'a object was thrown, not an Error' }],
    ['undefined', undefined, { type: 'undefined' }],
    ['null', null, { type: 'null' }],
    [
      'an Error with a code and a 5,000-character message',
      Object.assign(new Error('m'.repeat(5000)), { code: 'ECONNRESET' }),
      { type: 'Error', code: 'ECONNRESET' },
    ],
  ])('describes %s without its contents beyond a bounded message', (_label, value, expected) => {
    const d = describeThrown(value);
    expect(d).toMatchObject(expected);
    expect(JSON.stringify(d)).not.toContain('glagent-secret');
    expect(d.err.length).toBeLessThanOrEqual(1001);
  });
});

describe('installStopSignals', () => {
  function signals() {
    const target = new EventEmitter();
    const exits: number[] = [];
    const stop = installStopSignals({ target: target as unknown as SignalTarget, exit: (c) => exits.push(c) });
    const send = (s: StopSignal): boolean => target.emit(s, s);
    return { target, exits, stop, send };
  }
  const settled = async (p: Promise<unknown>): Promise<unknown> =>
    Promise.race([p, new Promise((r) => setTimeout(() => r('pending'), 20))]);

  it('listens for SIGTERM and SIGINT as soon as it is installed', () => {
    const { target } = signals();
    expect(STOP_SIGNALS.map((s) => target.listenerCount(s))).toEqual([1, 1]);
  });

  it.each(STOP_SIGNALS)('exits 0 at once on %s before start-up began (nothing has started)', async (s) => {
    const { exits, stop, send } = signals();
    send(s);
    expect(exits).toEqual([0]);
    expect(stop.received).toBe(s);
    expect(await settled(stop.next)).toBe('pending');
  });

  it.each(STOP_SIGNALS)("once start-up began, %s is the daemon's: reported and resolved, no exit", async (s) => {
    const { exits, stop, send } = signals();
    const seen: StopSignal[] = [];
    stop.starting((signal) => seen.push(signal));
    expect(await settled(stop.next)).toBe('pending');
    send(s);
    expect(seen).toEqual([s]);
    expect(await stop.next).toBe(s);
    expect(exits).toEqual([]);
  });

  it('resolves next for a daemon that waits only after start-up, when the signal came during it', async () => {
    const { stop, send } = signals();
    stop.starting();
    send('SIGTERM');
    await new Promise((r) => setTimeout(r, 5));
    expect(await stop.next).toBe('SIGTERM');
  });

  it('exits 1 at once on a second signal, during the clean stop or before start-up', () => {
    for (const startup of [true, false]) {
      const { exits, stop, send } = signals();
      if (startup) stop.starting();
      send('SIGTERM');
      send('SIGINT');
      expect(exits).toEqual(startup ? [1] : [0, 1]);
      expect(stop.received).toBe('SIGTERM');
    }
  });

  it('after start-up finished a signal resolves next without the start-up callback', async () => {
    const { exits, stop, send } = signals();
    const seen: StopSignal[] = [];
    stop.starting((signal) => seen.push(signal));
    stop.started();
    send('SIGTERM');
    expect(await stop.next).toBe('SIGTERM');
    expect(seen).toEqual([]);
    expect(exits).toEqual([]);
  });

  it('dispose removes the listeners', () => {
    const { target, stop } = signals();
    stop.dispose();
    expect(STOP_SIGNALS.map((s) => target.listenerCount(s))).toEqual([0, 0]);
  });
});
