/**
 * Polling for tests: wait until a condition holds, with the last failure in the timeout message
 * so a red test says what it was waiting for.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Calls `fn` every `intervalMs` until it returns a value other than `undefined`, `null` or
 * `false`, and resolves with that value. Errors thrown by `fn` count as "not yet"; on timeout the
 * last one is the `cause`.
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  timeoutMs = 10_000,
  what = 'condition',
  intervalMs = 50,
): Promise<Exclude<T, undefined | null | false>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined && value !== null && value !== false)
        return value as Exclude<T, undefined | null | false>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${detail}`,
        lastError === undefined ? undefined : { cause: lastError },
      );
    }
    await sleep(intervalMs);
  }
}
