import { describe, expect, it } from '@jest/globals';
import { ByteBudget } from './byte-budget.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('ByteBudget', () => {
  it('grants up to its capacity, then queues in order', async () => {
    const budget = new ByteBudget(100);
    const a = await budget.acquire(60);
    const order: string[] = [];
    const b = budget.acquire(50).then((r) => (order.push('b'), r));
    const c = budget.acquire(10).then((r) => (order.push('c'), r)); // fits, but waits behind b: no starvation
    await tick();
    expect([budget.inUse, budget.queued, order]).toEqual([60, 2, []]);
    a();
    a(); // idempotent
    const releaseB = await b;
    const releaseC = await c;
    expect([budget.inUse, order]).toEqual([60, ['b', 'c']]);
    releaseB();
    releaseC();
    expect(budget.inUse).toBe(0);
  });

  it('lets a request over the whole budget run alone', async () => {
    const budget = new ByteBudget(100);
    const small = await budget.acquire(1);
    let big: (() => void) | undefined;
    void budget.acquire(500).then((r) => (big = r));
    await tick();
    expect(big).toBeUndefined();
    small();
    await tick();
    expect(budget.inUse).toBe(100);
    big?.();
    expect(budget.inUse).toBe(0);
  });
});
