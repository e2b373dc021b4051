/**
 * Jest global teardown of the integration project: stops the control plane that global setup
 * started (controller-manager, apiserver, etcd, then its folder). Nothing to do when an external
 * cluster was used. Imports nothing at run time (jest loads this as CommonJS; see global-setup.ts).
 */
import type { ControlPlane } from './controlplane.js';

/** Must match global-setup.ts. */
const CONTROL_PLANE_GLOBAL = '__gitopsTestControlPlane';

export default async function globalTeardown(): Promise<void> {
  const holder = globalThis as Record<string, unknown>;
  const cp = holder[CONTROL_PLANE_GLOBAL] as ControlPlane | undefined;
  if (!cp) return;
  delete holder[CONTROL_PLANE_GLOBAL];
  const t0 = Date.now();
  await cp.stop();
  process.stderr.write(`[controlplane] stopped in ${Date.now() - t0} ms\n`);
}
