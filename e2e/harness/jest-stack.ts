/**
 * Jest hooks over e2e/harness/stack.ts: one stack per test file, writing to a fresh namespace of
 * its own (the manifest project's default_namespace), started before the file's tests and stopped
 * after them. Kept apart from stack.ts because `@jest/globals` throws when imported outside jest,
 * and stack.ts is also used by `npm run demo`.
 */
import { afterAll, beforeAll } from '@jest/globals';
import type { KubeConfig } from '@kubernetes/client-node';
import { freshNamespace, testKubeConfig, type TestNamespace } from './kube.js';
import { startStack, type Stack, type StackOptions } from './stack.js';

/** How long starting or stopping a stack may take (processes, Git, the install's RBAC). */
const STACK_HOOK_TIMEOUT_MS = 60_000;

/** What {@link useStack} hands the tests; read the fields inside tests or later hooks. */
export interface StackFixture {
  readonly kc: KubeConfig;
  readonly ns: TestNamespace;
  readonly stack: Stack;
}

/**
 * Registers beforeAll/afterAll that create namespace `<prefix>-<random>` on the test control
 * plane, start a stack whose manifest project defaults to it, and afterwards stop the stack and
 * delete the namespace. A later beforeAll of the file runs after the stack is up.
 */
export function useStack(
  prefix: string,
  options: Omit<StackOptions, 'kubeConfig' | 'defaultNamespace'> = {},
): StackFixture {
  let kc: KubeConfig | undefined;
  let ns: TestNamespace | undefined;
  let stack: Stack | undefined;
  beforeAll(async () => {
    kc = testKubeConfig();
    ns = await freshNamespace(prefix, kc);
    stack = await startStack({ ...options, kubeConfig: kc, defaultNamespace: ns.name });
  }, STACK_HOOK_TIMEOUT_MS);
  afterAll(async () => {
    await stack?.stop();
    await ns?.delete();
  }, STACK_HOOK_TIMEOUT_MS);
  const need = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`useStack(${prefix}): no ${what} before beforeAll ran`);
    return value;
  };
  return {
    get kc() {
      return need(kc, 'kube config');
    },
    get ns() {
      return need(ns, 'namespace');
    },
    get stack() {
      return need(stack, 'stack');
    },
  };
}
