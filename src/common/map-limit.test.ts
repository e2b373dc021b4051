import { describe, expect, it } from '@jest/globals';
import { BoundedMap, Limiter, mapLimit } from './map-limit.js';

describe('mapLimit', () => {
  it('keeps results in input order and never runs more than the limit at once', async () => {
    let running = 0;
    let peak = 0;
    const out = await mapLimit([30, 5, 20, 1, 10], 2, async (ms, i) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, ms));
      running--;
      return `${i}:${ms}`;
    });
    expect(out).toEqual(['0:30', '1:5', '2:20', '3:1', '4:10']);
    expect(peak).toBe(2);
  });

  it('returns an empty list for no items', async () => {
    expect(await mapLimit([], 4, async () => 1)).toEqual([]);
  });
});

describe('BoundedMap', () => {
  it('forgets the least recently used entry past its count', () => {
    const m = new BoundedMap<number>(2);
    m.set('a', 1);
    m.set('b', 2);
    expect(m.get('a')).toBe(1); // a is now the most recent
    m.set('c', 3);
    expect([m.get('a'), m.get('b'), m.get('c')]).toEqual([1, undefined, 3]);
    expect(m.size).toBe(2);
  });

  it('forgets the oldest entries past its weight, keeps a single entry however heavy, and ignores a stale weight', () => {
    const m = new BoundedMap<string>(10, 100);
    m.set('a', 'A');
    m.weigh('a', 'A', 60);
    m.set('b', 'B');
    m.weigh('b', 'B', 60);
    expect([m.get('a'), m.get('b')]).toEqual([undefined, 'B']);
    m.weigh('b', 'B', 500);
    expect(m.get('b')).toBe('B');
    m.weigh('b', 'other value', 1);
    m.set('c', 'C');
    expect([m.get('b'), m.get('c')]).toEqual([undefined, 'C']);
  });

  it('deleteIf removes only the same value', () => {
    const m = new BoundedMap<string>(10);
    m.set('a', 'new');
    m.deleteIf('a', 'old');
    expect(m.get('a')).toBe('new');
    m.deleteIf('a', 'new');
    expect(m.get('a')).toBeUndefined();
  });
});

describe('Limiter', () => {
  it('lets at most max holders in, the others in arrival order, and a double release frees one slot', async () => {
    const limiter = new Limiter(2);
    const order: string[] = [];
    const r1 = await limiter.acquire();
    const r2 = await limiter.acquire();
    const third = limiter.acquire().then((r) => {
      order.push('third');
      return r;
    });
    const fourth = limiter.acquire().then((r) => {
      order.push('fourth');
      return r;
    });
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([]);
    r1();
    r1();
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['third']);
    r2();
    (await third)();
    (await fourth)();
    expect(order).toEqual(['third', 'fourth']);
    expect(await limiter.run(async () => 7)).toBe(7);
  });
});
