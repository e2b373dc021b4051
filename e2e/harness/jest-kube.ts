/**
 * Jest hooks over e2e/harness/kube.ts. Kept apart because `@jest/globals` throws when imported
 * outside jest, and kube.ts is also used by plain-Node harness code.
 */
import { afterEach, beforeEach } from '@jest/globals';
import { freshNamespace, type TestNamespace } from './kube.js';

/**
 * Registers beforeEach/afterEach that give each test its own namespace `<prefix>-<random>`,
 * deleted after the test. Read `.name` inside a test (it changes per test).
 */
export function useNamespace(prefix: string): { readonly name: string } {
  let current: TestNamespace | undefined;
  beforeEach(async () => {
    current = await freshNamespace(prefix);
  });
  afterEach(async () => {
    const ns = current;
    current = undefined;
    await ns?.delete();
  });
  return {
    get name(): string {
      if (!current) throw new Error(`useNamespace(${prefix}): no namespace outside a test`);
      return current.name;
    },
  };
}
