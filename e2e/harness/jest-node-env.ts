/**
 * Setup file of jest's `node` project, run inside each node test file before it: points the usual
 * TEST_ENV variables (kube.ts) at the node project's own control plane, so `testKubeConfig()`,
 * `freshNamespace()` and `testAuditLogPath()` reach the cluster that has the node. Both projects'
 * global setups publish through one shared environment, hence the separate names
 * (NODE_PROJECT_ENV in global-setup.ts). When the node could not start, the test file fails here
 * with the reason (what the machine lacks): node tests are never skipped.
 */
import { TEST_ENV } from './kube.js';

const unavailable = process.env.GITOPS_TEST_NODE_UNAVAILABLE;
if (unavailable) throw new Error(unavailable);
const mapping: Array<[string, string]> = [
  [TEST_ENV.kubeconfig, 'GITOPS_TEST_NODE_KUBECONFIG'],
  [TEST_ENV.auditLog, 'GITOPS_TEST_NODE_AUDIT_LOG'],
  [TEST_ENV.dir, 'GITOPS_TEST_NODE_CP_DIR'],
];
for (const [to, from] of mapping) {
  const value = process.env[from];
  if (value) process.env[to] = value;
  else delete process.env[to];
}
