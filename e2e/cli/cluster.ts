/**
 * `npm run cluster -- --kubeconfig PATH [--audit-log PATH] [--node]`: a real control plane (etcd,
 * kube-apiserver, kube-controller-manager) in the foreground, for trying things by hand with
 * kubectl or for running the integration tests against a long-lived cluster. With `--node`, also
 * a real node (containerd, kubelet, kube-scheduler: e2e/harness/node.ts) so pods run; the
 * kubeconfig is then written only once the Node is Ready. Builds the binaries first when the cache
 * is empty (progress on stderr), and stops cleanly (node first, then the control plane in reverse
 * order, folders deleted, kubeconfig removed) on SIGINT/SIGTERM.
 */
import { Command } from 'commander';
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ensureControlPlaneBinaries, repoRoot, startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { assertNodeHost, ensureNodeBinaries, startNode, type TestNode } from '../harness/node.js';
import { writeProductImage } from '../harness/product-image.js';

const program = new Command('cluster')
  .description('Run a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) in the foreground')
  .requiredOption(
    '--kubeconfig <path>',
    'where to write the admin kubeconfig once the control plane is ready (removed on stop)',
  )
  .option('--audit-log <path>', 'where the apiserver writes its audit log of write requests (kept after stop)')
  .option(
    '--node',
    'also run a real node (containerd, kubelet, kube-scheduler) so pods run; needs root and ' +
      "Debian's containerd runc containernetworking-plugins busybox-static nginx-light; the kubeconfig is written once the Node is Ready",
  )
  .option(
    '--product-image',
    `with --node: also import this project's own image (the Dockerfile's layout, assembled without a ` +
      'registry by e2e/harness/product-image.ts) before the kubeconfig is written',
  )
  .showHelpAfterError();
program.parse();
const opts = program.opts<{ kubeconfig: string; auditLog?: string; node?: boolean; productImage?: boolean }>();
const kubeconfig = resolve(opts.kubeconfig);
const say = (line: string): void => void process.stderr.write(`${line}\n`);

let cp: ControlPlane | undefined;
let node: TestNode | undefined;
let stopping: Promise<void> | undefined;

/** Stops everything once; a second signal while stopping exits at once (the exit handler kills). */
function shutdown(code: number): Promise<void> {
  stopping ??= (async () => {
    if (node) {
      say('stopping node (kubelet, scheduler, containerd, then mounts, cgroups, bridge)...');
      say(`node stopped in ${await node.stop()} ms`);
    }
    if (cp) {
      say('stopping control plane (controller-manager, apiserver, etcd)...');
      const t0 = Date.now();
      await cp.stop();
      await rm(kubeconfig, { force: true });
      say(`stopped in ${Date.now() - t0} ms; removed ${kubeconfig}`);
    }
    process.exit(code);
  })();
  return stopping;
}

let signalled = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (signalled) process.exit(130);
    signalled = true;
    // During start-up the control plane is not ours to stop yet; main() stops it when start returns.
    if (cp) void shutdown(0);
  });
}

async function main(): Promise<void> {
  const t0 = Date.now();
  if (opts.productImage && !opts.node) throw new Error('--product-image needs --node');
  // A machine that cannot run a node says so before minutes of building.
  if (opts.node) await assertNodeHost();
  const binDir = await ensureControlPlaneBinaries(say);
  const nodeBinDir = opts.node ? await ensureNodeBinaries(say) : undefined;
  cp = await startControlPlane({
    binDir,
    auditLog: opts.auditLog,
    log: (line) => say(`[cluster] ${line}`),
    handleSignals: false,
  });
  if (signalled) return shutdown(0);
  if (nodeBinDir) {
    node = await startNode({
      kubeconfigPath: cp.kubeconfigPath,
      binDir: nodeBinDir,
      log: (line) => say(`[node] ${line}`),
      handleSignals: false,
    });
    if (signalled) return shutdown(0);
    if (opts.productImage) {
      const i0 = Date.now();
      const image = await writeProductImage(repoRoot(), join(node.dir, 'images', 'product.tar'));
      await node.importArchive(image.file);
      say(`[node] imported ${image.ref} in ${Date.now() - i0} ms`);
      if (signalled) return shutdown(0);
    }
  }
  await mkdir(dirname(kubeconfig), { recursive: true });
  await copyFile(cp.kubeconfigPath, kubeconfig);
  const t = cp.timings;
  process.stdout.write(
    [
      `Control plane ready at ${cp.server} (apiserver ${(t.apiserverMs / 1000).toFixed(1)} s, controllers ${(t.controllersMs / 1000).toFixed(1)} s; ${((Date.now() - t0) / 1000).toFixed(1)} s in all)`,
      `  kubeconfig: ${kubeconfig}`,
      `  audit log:  ${cp.auditLogPath}`,
      `  logs:       ${cp.dir}/*.log`,
      ...(node
        ? [
            `  node:       ${node.name} Ready after ${(node.timings.readyMs / 1000).toFixed(1)} s; folder ${node.dir}`,
            `              bridge ${node.identity.bridge}, pods ${node.identity.subnet}, cgroups ${node.identity.cgroupRoot}`,
            `  images:     ctr --address ${node.containerdAddress} -n k8s.io images ls`,
            `  node tests: GITOPS_TEST_NODE_KUBECONFIG=${kubeconfig} GITOPS_TEST_CONTAINERD_ADDRESS=${node.containerdAddress} npm test -- --selectProjects node`,
          ]
        : []),
      '',
      `  kubectl --kubeconfig ${kubeconfig} get namespaces`,
      `  export KUBECONFIG=${kubeconfig}`,
      `  GITOPS_TEST_KUBECONFIG=${kubeconfig} GITOPS_TEST_AUDIT_LOG=${cp.auditLogPath} npm test`,
      '',
      'Press Ctrl-C to stop.',
      '',
    ].join('\n'),
  );
  const name = await (node ? Promise.race([cp.unexpectedExit, node.unexpectedExit]) : cp.unexpectedExit);
  if (stopping) return;
  const logDir = node && ['containerd', 'kubelet', 'kube-scheduler'].includes(name) ? node.dir : cp.dir;
  const log = await readFile(join(logDir, `${name}.log`), 'utf8').catch(() => '');
  say(`${name} exited unexpectedly; last lines of its log:\n${log.split('\n').slice(-30).join('\n')}`);
  await shutdown(1);
}

main().catch(async (err: unknown) => {
  say(`cluster: ${err instanceof Error ? err.message : String(err)}`);
  await (cp ? shutdown(1) : Promise.resolve(process.exit(1)));
});
