/**
 * Jest global teardown of the integration and node projects: stops what global setup started —
 * the integration project's control plane (controller-manager, apiserver, etcd, then its folder),
 * or the node project's node (everything it left on the host too) and then its control plane.
 * Nothing to do when an external cluster was used. Imports nothing at run time (jest loads this as
 * CommonJS; see global-setup.ts).
 */
import type { ControlPlane } from './controlplane.js';
import type { TestNode } from './node.js';

/** Must match global-setup.ts. */
const CONTROL_PLANE_GLOBAL = '__gitopsTestControlPlane';
const NODE_GLOBAL = '__gitopsTestNode';

export default async function globalTeardown(
  _globalConfig?: unknown,
  projectConfig?: { displayName?: { name?: string } },
): Promise<void> {
  const holder = globalThis as Record<string, unknown>;
  if (projectConfig?.displayName?.name === 'node') {
    const running = holder[NODE_GLOBAL] as { cp: ControlPlane; node: TestNode } | undefined;
    if (!running) return;
    delete holder[NODE_GLOBAL];
    const t0 = Date.now();
    const nodeMs = await running.node.stop();
    await running.cp.stop();
    process.stderr.write(`[node] node stopped in ${nodeMs} ms, with its control plane in ${Date.now() - t0} ms\n`);
    return;
  }
  const cp = holder[CONTROL_PLANE_GLOBAL] as ControlPlane | undefined;
  if (!cp) return;
  delete holder[CONTROL_PLANE_GLOBAL];
  const t0 = Date.now();
  await cp.stop();
  process.stderr.write(`[controlplane] stopped in ${Date.now() - t0} ms\n`);
}
