/**
 * `npm run cluster -- --kubeconfig PATH [--audit-log PATH]`: a real control plane (etcd,
 * kube-apiserver, kube-controller-manager) in the foreground, for trying things by hand with
 * kubectl or for running the integration tests against a long-lived cluster. Builds the binaries
 * first when the cache is empty (progress on stderr), writes an admin kubeconfig to PATH once the
 * controllers work, and stops cleanly (reverse order, folder deleted, kubeconfig removed) on
 * SIGINT/SIGTERM.
 */
import { Command } from 'commander';
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ensureControlPlaneBinaries, startControlPlane, type ControlPlane } from '../harness/controlplane.js';

const program = new Command('cluster')
  .description('Run a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) in the foreground')
  .requiredOption('--kubeconfig <path>', 'where to write the admin kubeconfig once the control plane is ready (removed on stop)')
  .option('--audit-log <path>', 'where the apiserver writes its audit log of write requests (kept after stop)')
  .showHelpAfterError();
program.parse();
const opts = program.opts<{ kubeconfig: string; auditLog?: string }>();
const kubeconfig = resolve(opts.kubeconfig);
const say = (line: string): void => void process.stderr.write(`${line}\n`);

let cp: ControlPlane | undefined;
let stopping: Promise<void> | undefined;

/** Stops everything once; a second signal while stopping exits at once (the exit handler kills). */
function shutdown(code: number): Promise<void> {
  stopping ??= (async () => {
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
  const binDir = await ensureControlPlaneBinaries(say);
  cp = await startControlPlane({ binDir, auditLog: opts.auditLog, log: (line) => say(`[cluster] ${line}`), handleSignals: false });
  if (signalled) return shutdown(0);
  await mkdir(dirname(kubeconfig), { recursive: true });
  await copyFile(cp.kubeconfigPath, kubeconfig);
  const t = cp.timings;
  process.stdout.write(
    [
      `Control plane ready at ${cp.server} (apiserver ${(t.apiserverMs / 1000).toFixed(1)} s, controllers ${(t.controllersMs / 1000).toFixed(1)} s; ${((Date.now() - t0) / 1000).toFixed(1)} s in all)`,
      `  kubeconfig: ${kubeconfig}`,
      `  audit log:  ${cp.auditLogPath}`,
      `  logs:       ${cp.dir}/*.log`,
      '',
      `  kubectl --kubeconfig ${kubeconfig} get namespaces`,
      `  export KUBECONFIG=${kubeconfig}`,
      `  GITOPS_TEST_KUBECONFIG=${kubeconfig} GITOPS_TEST_AUDIT_LOG=${cp.auditLogPath} npm test`,
      '',
      'Press Ctrl-C to stop.',
      '',
    ].join('\n'),
  );
  const name = await cp.unexpectedExit;
  if (stopping) return;
  const log = await readFile(join(cp.dir, `${name}.log`), 'utf8').catch(() => '');
  say(`${name} exited unexpectedly; last lines of its log:\n${log.split('\n').slice(-30).join('\n')}`);
  await shutdown(1);
}

main().catch(async (err: unknown) => {
  say(`cluster: ${err instanceof Error ? err.message : String(err)}`);
  await (cp ? shutdown(1) : Promise.resolve(process.exit(1)));
});
