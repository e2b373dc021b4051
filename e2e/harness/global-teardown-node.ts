/**
 * Jest global teardown of the `node` project: global-teardown.ts's node branch, in a file of its
 * own for the reason global-setup-node.ts gives.
 */
import type * as SharedModule from './global-teardown.js';

type Shared = typeof SharedModule;

export default async function globalTeardownNode(
  globalConfig: unknown,
  projectConfig: { displayName?: { name?: string } },
): Promise<void> {
  const shared = require('./global-teardown.ts') as Shared;
  await shared.default(globalConfig, { ...projectConfig, displayName: { name: 'node' } });
}
