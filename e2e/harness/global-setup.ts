/**
 * Jest global setup of the integration and node projects.
 *
 * `integration`: starts ONE control plane for the whole run (building the binaries first if the
 * cache is empty) and publishes it to the test workers through environment variables (see
 * TEST_ENV in kube.ts), since workers cannot share objects with this process. When
 * GITOPS_TEST_KUBECONFIG is already set, that cluster is used and nothing is started (audit-log
 * tests then need GITOPS_TEST_AUDIT_LOG as well).
 *
 * `node`: starts its own control plane plus a real node (e2e/harness/node.ts) and publishes them
 * under NODE_PROJECT_ENV's names (both projects share this process's environment, and so the
 * workers'); jest-node-env.ts maps them onto TEST_ENV's names inside each node test file. When
 * GITOPS_TEST_NODE_KUBECONFIG and GITOPS_TEST_CONTAINERD_ADDRESS are set (`npm run cluster --
 * --node`), those are used. A machine that cannot run a node does not abort the run: the reason is
 * published as GITOPS_TEST_NODE_UNAVAILABLE and every node test file fails with it.
 *
 * Why the odd loading: jest runs this file through its transform as CommonJS and without
 * `moduleNameMapper`, so it cannot import the ESM harness modules (`./controlplane.js` names a .ts
 * file, and they use `import.meta`). It therefore transpiles the harness (and src/, which harness
 * modules may import) with swc into node_modules/.cache/gitops-harness/ as real ES modules, only
 * files that changed, and imports them natively. This keeps direct jest runs working without
 * `npm run build`. "Changed" is decided by content, never by modification time: each output ends
 * with the SHA-256 of its source (and of the swc version and options), because a `git checkout`
 * of an older commit leaves sources older than their cached output, which would run stale code.
 */
import { transform, version as swcVersion } from '@swc/core';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ControlPlane, StartControlPlaneOptions } from './controlplane.js';
import type { StartNodeOptions, TestNode } from './node.js';

/** Where global teardown (same process, separate module) finds the running control plane. */
const CONTROL_PLANE_GLOBAL = '__gitopsTestControlPlane';
/** … and the node project's node and control plane. */
const NODE_GLOBAL = '__gitopsTestNode';
const KUBECONFIG_ENV = 'GITOPS_TEST_KUBECONFIG';
const AUDIT_LOG_ENV = 'GITOPS_TEST_AUDIT_LOG';
const DIR_ENV = 'GITOPS_TEST_CP_DIR';

/**
 * The node project's variables; jest-node-env.ts copies the first three onto TEST_ENV's names
 * (kube.ts), node.ts reads the rest (NODE_TEST_ENV). Keep the three files in step.
 */
export const NODE_PROJECT_ENV = {
  kubeconfig: 'GITOPS_TEST_NODE_KUBECONFIG',
  auditLog: 'GITOPS_TEST_NODE_AUDIT_LOG',
  cpDir: 'GITOPS_TEST_NODE_CP_DIR',
  nodeDir: 'GITOPS_TEST_NODE_DIR',
  containerdAddress: 'GITOPS_TEST_CONTAINERD_ADDRESS',
  nodeName: 'GITOPS_TEST_NODE_NAME',
  unavailable: 'GITOPS_TEST_NODE_UNAVAILABLE',
} as const;

/** A real `import()`: swc's CommonJS output would turn a literal one into `require`. */
const importEsm = new Function('url', 'return import(url)') as (url: string) => Promise<unknown>;

function findRoot(): string {
  let dir = process.cwd();
  while (!existsSync(join(dir, 'scripts', 'build-controlplane.sh'))) {
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error(`${process.cwd()}: not inside the gitops repository (no scripts/build-controlplane.sh above it)`);
    dir = parent;
  }
  return dir;
}

async function listTs(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory() && entry.name !== 'testdata') out.push(...(await listTs(p)));
    else if (
      entry.isFile() &&
      entry.name.endsWith('.ts') &&
      !entry.name.endsWith('.test.ts') &&
      !entry.name.endsWith('.d.ts')
    )
      out.push(p);
  }
  return out;
}

const SWC_OPTIONS = {
  jsc: { target: 'es2022', parser: { syntax: 'typescript' } },
  module: { type: 'es6' },
  sourceMaps: 'inline',
  swcrc: false,
} as const;

/** The last line of every cached output: which source content (and compiler) it was made from. */
const HASH_MARK = '// gitops-harness-source-sha256: ';

function sourceHash(source: string): string {
  return createHash('sha256')
    .update(`${swcVersion}\0${JSON.stringify(SWC_OPTIONS)}\0`)
    .update(source)
    .digest('hex');
}

async function cachedHash(out: string): Promise<string | undefined> {
  const text = await readFile(out, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const at = text.lastIndexOf(`\n${HASH_MARK}`);
  return at < 0 ? undefined : text.slice(at + 1 + HASH_MARK.length).trim();
}

async function listJs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const out: string[] = [];
  for (const entry of entries) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listJs(p)));
    else if (entry.isFile() && entry.name.endsWith('.js')) out.push(p);
  }
  return out;
}

/**
 * Transpiles `src/` and `e2e/harness/` of `root` into an ESM mirror tree under `outRoot`; returns
 * the mirror's root, the files that failed (someone's half-edited file must not break the run
 * unless it is needed) and how many were transpiled (the rest matched their cached hash).
 * Outputs whose source is gone are deleted, so an import of a deleted module fails as it should.
 */
export async function transpileHarness(
  root: string,
  outRoot = join(root, 'node_modules', '.cache', 'gitops-harness'),
): Promise<{ outRoot: string; failures: string[]; transpiled: number }> {
  await mkdir(outRoot, { recursive: true });
  // Below node_modules Node would treat .js as CommonJS without this.
  await writeFile(join(outRoot, 'package.json'), '{"type":"module"}\n');
  const files = [...(await listTs(join(root, 'src'))), ...(await listTs(join(root, 'e2e', 'harness')))];
  const failures: string[] = [];
  const wanted = new Set<string>();
  let transpiled = 0;
  await Promise.all(
    files.map(async (file) => {
      const out = join(outRoot, relative(root, file)).replace(/\.ts$/, '.js');
      wanted.add(out);
      try {
        const source = await readFile(file, 'utf8');
        const hash = sourceHash(source);
        if ((await cachedHash(out)) === hash) return;
        const { code } = await transform(source, { ...SWC_OPTIONS, filename: file });
        await mkdir(dirname(out), { recursive: true });
        // Written aside and renamed: a concurrent run never imports half a file, and a crash
        // mid-write leaves either the old file (old hash, so redone) or the new one.
        const tmp = `${out}.${process.pid}.tmp`;
        await writeFile(tmp, `${code}\n${HASH_MARK}${hash}\n`);
        await rename(tmp, out);
        transpiled++;
      } catch (err) {
        // No output rather than a stale one: an import of it then fails and names this file.
        await rm(out, { force: true });
        failures.push(`${relative(root, file)}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }),
  );
  for (const dir of [join(outRoot, 'src'), join(outRoot, 'e2e', 'harness')]) {
    for (const out of await listJs(dir)) if (!wanted.has(out)) await rm(out, { force: true });
  }
  return { outRoot, failures, transpiled };
}

/** Imports one transpiled harness module (see the module comment). */
async function loadHarness<T>(name: string): Promise<T> {
  const { outRoot, failures } = await transpileHarness(findRoot());
  try {
    return (await importEsm(pathToFileURL(join(outRoot, 'e2e', 'harness', `${name}.js`)).href)) as T;
  } catch (err) {
    throw new Error(
      `e2e/harness/${name}.ts: cannot load the transpiled harness${failures.length ? ` (swc failed on: ${failures.join('; ')})` : ''}`,
      { cause: err },
    );
  }
}

/** Only the build script's progress (a cold build takes minutes); readiness is summarised after. */
const buildProgress = (line: string): void => {
  if (line.startsWith('[controlplane') || line.startsWith('[node')) process.stderr.write(`${line}\n`);
};

type NodeHarness = {
  startNode(opts: StartNodeOptions): Promise<TestNode>;
  checkNodeHost(): Promise<string[]>;
};

async function nodeProjectSetup(): Promise<void> {
  const env = NODE_PROJECT_ENV;
  if (process.env[env.kubeconfig] && process.env[env.containerdAddress]) {
    process.stderr.write(`\n[node] using ${env.kubeconfig}=${process.env[env.kubeconfig]}\n`);
    return;
  }
  const nodeHarness = await loadHarness<NodeHarness>('node');
  const missing = await nodeHarness.checkNodeHost();
  if (missing.length) {
    const reason = `this machine cannot run the test node; missing:\n  - ${missing.join('\n  - ')}`;
    process.env[env.unavailable] = reason;
    process.stderr.write(`\n[node] ${reason}\n`);
    return;
  }
  const cpHarness = await loadHarness<{ startControlPlane(opts?: StartControlPlaneOptions): Promise<ControlPlane> }>(
    'controlplane',
  );
  let cp: ControlPlane | undefined;
  try {
    cp = await cpHarness.startControlPlane({ log: buildProgress });
    const node = await nodeHarness.startNode({ kubeconfigPath: cp.kubeconfigPath, log: buildProgress });
    (globalThis as Record<string, unknown>)[NODE_GLOBAL] = { cp, node };
    Object.assign(process.env, {
      [env.kubeconfig]: cp.kubeconfigPath,
      [env.auditLog]: cp.auditLogPath,
      [env.cpDir]: cp.dir,
      [env.nodeDir]: node.dir,
      [env.containerdAddress]: node.containerdAddress,
      [env.nodeName]: node.name,
    });
    process.stderr.write(
      `\n[node] ${node.name} Ready ${node.timings.readyMs} ms after its start (control plane ${cp.timings.controllersMs} ms; ${node.dir})\n`,
    );
  } catch (err) {
    await cp?.stop();
    const reason = `the test node did not start: ${err instanceof Error ? err.message : String(err)}`;
    process.env[env.unavailable] = reason;
    process.stderr.write(`\n[node] ${reason}\n`);
  }
}

export default async function globalSetup(
  _globalConfig?: unknown,
  projectConfig?: { displayName?: { name?: string } },
): Promise<void> {
  if (projectConfig?.displayName?.name === 'node') return nodeProjectSetup();
  if (process.env[KUBECONFIG_ENV]) {
    process.stderr.write(`\n[controlplane] using ${KUBECONFIG_ENV}=${process.env[KUBECONFIG_ENV]}\n`);
    return;
  }
  const harness = await loadHarness<{ startControlPlane(opts?: StartControlPlaneOptions): Promise<ControlPlane> }>(
    'controlplane',
  );
  const cp = await harness.startControlPlane({ log: buildProgress });
  (globalThis as Record<string, unknown>)[CONTROL_PLANE_GLOBAL] = cp;
  process.env[KUBECONFIG_ENV] = cp.kubeconfigPath;
  process.env[AUDIT_LOG_ENV] = cp.auditLogPath;
  process.env[DIR_ENV] = cp.dir;
  const t = cp.timings;
  process.stderr.write(
    `\n[controlplane] ${cp.server} ready: apiserver ${t.apiserverMs} ms, controllers ${t.controllersMs} ms (${cp.dir})\n`,
  );
}
