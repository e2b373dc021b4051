/**
 * Bounds for memory and for I/O fan-out, the one place each is written:
 * - BoundedMap: a map that forgets the least recently used entry first, by count and by weight
 *   (memos of Git reads, parsed configs);
 * - Limiter: at most `max` holders at a time, the others wait in arrival order (config reads);
 * - mapLimit: a list mapped with at most `limit` calls in flight (applies, prunes, status writes).
 */

/** A bounded map that forgets the least recently used entry first, by count and by weight. */
export class BoundedMap<V> {
  private readonly map = new Map<string, V>();
  private readonly weights = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly max: number,
    private readonly maxWeight = Infinity,
  ) {}

  get size(): number {
    return this.map.size;
  }

  /** The entry, which becomes the most recently used. */
  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: string, value: V): void {
    this.delete(key);
    this.map.set(key, value);
    this.trim();
  }

  /** Give an entry its weight once known (a promise's, when it resolves), if it is still the same. */
  weigh(key: string, value: V, weight: number): void {
    if (this.map.get(key) !== value) return;
    this.total += weight - (this.weights.get(key) ?? 0);
    this.weights.set(key, weight);
    this.trim();
  }

  delete(key: string): void {
    this.map.delete(key);
    this.total -= this.weights.get(key) ?? 0;
    this.weights.delete(key);
  }

  /** Deletes the entry only if it is still `value` (a failed promise must not evict its successor). */
  deleteIf(key: string, value: V): void {
    if (this.map.get(key) === value) this.delete(key);
  }

  private trim(): void {
    // One entry over the weight stays: the newest result is kept even when it alone is too heavy.
    while (this.map.size > this.max || (this.total > this.maxWeight && this.map.size > 1)) {
      this.delete(this.map.keys().next().value as string);
    }
  }
}

/** At most `max` holders at a time; the others wait in arrival order. */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number) {}

  /** Resolves with a release function once a slot is free; releasing twice is harmless. */
  async acquire(): Promise<() => void> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter, so `active` only drops when nobody waits.
      if (next) next();
      else this.active--;
    };
  }

  /** Runs `fn` in a slot. */
  async run<R>(fn: () => Promise<R>): Promise<R> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/** Runs `fn` over `items` with at most `limit` in flight, keeping result order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const limiter = new Limiter(Math.max(1, limit));
  return Promise.all(items.map((item, i) => limiter.run(() => fn(item, i))));
}
