/**
 * A semaphore over bytes: the server-wide bound on manifest content being read from Git at once,
 * so 50 agents reading 50 MiB each at the same moment wait their turn instead of multiplying the
 * server's memory. Callers take all they need in one `acquire` (a read first sums the sizes from
 * object headers), so no caller holds part of the budget while waiting for more: no deadlock.
 * Waiters are served in order; a request larger than the whole budget waits for an empty budget
 * and then runs alone.
 */

export class ByteBudget {
  private used = 0;
  private readonly waiting: { bytes: number; grant: () => void }[] = [];

  constructor(readonly capacity: number) {
    if (!(capacity > 0)) throw new RangeError('a byte budget needs a positive capacity');
  }

  /** Bytes currently granted (for metrics and tests). */
  get inUse(): number {
    return this.used;
  }

  /** Callers waiting for a grant (for metrics and tests). */
  get queued(): number {
    return this.waiting.length;
  }

  /** Wait for `bytes` of the budget; resolves to the function that gives them back (idempotent). */
  async acquire(bytes: number): Promise<() => void> {
    const want = Math.min(Math.max(0, Math.ceil(bytes)), this.capacity);
    if (this.waiting.length === 0 && this.used + want <= this.capacity) {
      this.used += want;
    } else {
      await new Promise<void>((grant) => this.waiting.push({ bytes: want, grant }));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= want;
      this.drain();
    };
  }

  private drain(): void {
    while (this.waiting.length > 0 && this.used + this.waiting[0].bytes <= this.capacity) {
      const next = this.waiting.shift() as { bytes: number; grant: () => void };
      this.used += next.bytes;
      next.grant();
    }
  }
}
