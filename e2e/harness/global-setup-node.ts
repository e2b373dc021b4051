/**
 * Jest global setup of the `node` project: global-setup.ts's node branch. A file of its own
 * because jest runs each global setup file once per run, whichever projects name it.
 * Jest loads global setups as CommonJS through its transform (see global-setup.ts), so the shared
 * module is required by its .ts name.
 */
import type * as SharedModule from './global-setup.js';

type Shared = typeof SharedModule;

export default async function globalSetupNode(
  globalConfig: unknown,
  projectConfig: { displayName?: { name?: string } },
): Promise<void> {
  const shared = require('./global-setup.ts') as Shared;
  await shared.default(globalConfig, { ...projectConfig, displayName: { name: 'node' } });
}
