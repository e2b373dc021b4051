/**
 * Jest global setup of the integration project: starts ONE control plane for the whole run
 * (building the binaries first if the cache is empty) and publishes it to the test workers through
 * environment variables (see TEST_ENV in kube.ts), since workers cannot share objects with this
 * process. When GITOPS_TEST_KUBECONFIG is already set, that cluster is used and nothing is started
 * (audit-log tests then need GITOPS_TEST_AUDIT_LOG as well).
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

/** Where global teardown (same process, separate module) finds the running control plane. */
const CONTROL_PLANE_GLOBAL = '__gitopsTestControlPlane';
const KUBECONFIG_ENV = 'GITOPS_TEST_KUBECONFIG';
const AUDIT_LOG_ENV = 'GITOPS_TEST_AUDIT_LOG';
const DIR_ENV = 'GITOPS_TEST_CP_DIR';

/** A real `import()`: swc's CommonJS output would turn a literal one into `require`. */
const importEsm = new Function('url', 'return import(url)') as (url: string) => Promise<unknown>;

function findRoot(): string {
  let dir = process.cwd();
  while (!existsSync(join(dir, 'scripts', 'build-controlplane.sh'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`${process.cwd()}: not inside the gitops repository (no scripts/build-controlplane.sh above it)`);
    dir = parent;
  }
  return dir;
}

async function listTs(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory() && entry.name !== 'testdata') out.push(...(await listTs(p)));
    else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts')) out.push(p);
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
  return createHash('sha256').update(`${swcVersion}\0${JSON.stringify(SWC_OPTIONS)}\0`).update(source).digest('hex');
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
export async function transpileHarness(root: string, outRoot = join(root, 'node_modules', '.cache', 'gitops-harness')): Promise<{ outRoot: string; failures: string[]; transpiled: number }> {
  await mkdir(outRoot, { recursive: true });
  // Below node_modules Node would treat .js as CommonJS without this.
  await writeFile(join(outRoot, 'package.json'), '{"type":"module"}\n');
  const files = [...(await listTs(join(root, 'src'))), ...(await listTs(join(root, 'e2e', 'harness')))];
  const failures: string[] = [];
  const wanted = new Set<string>();
  let transpiled = 0;
  await Promise.all(files.map(async (file) => {
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
  }));
  for (const dir of [join(outRoot, 'src'), join(outRoot, 'e2e', 'harness')]) {
    for (const out of await listJs(dir)) if (!wanted.has(out)) await rm(out, { force: true });
  }
  return { outRoot, failures, transpiled };
}

export default async function globalSetup(): Promise<void> {
  if (process.env[KUBECONFIG_ENV]) {
    process.stderr.write(`\n[controlplane] using ${KUBECONFIG_ENV}=${process.env[KUBECONFIG_ENV]}\n`);
    return;
  }
  const root = findRoot();
  const { outRoot, failures } = await transpileHarness(root);
  let harness: { startControlPlane(opts?: StartControlPlaneOptions): Promise<ControlPlane> };
  try {
    harness = (await importEsm(pathToFileURL(join(outRoot, 'e2e', 'harness', 'controlplane.js')).href)) as typeof harness;
  } catch (err) {
    throw new Error(`e2e/harness/controlplane.ts: cannot load the transpiled harness${failures.length ? ` (swc failed on: ${failures.join('; ')})` : ''}`, { cause: err });
  }
  const cp = await harness.startControlPlane({
    log: (line) => {
      // Only the build script's progress (a cold build takes minutes); readiness is summarised below.
      if (line.startsWith('[controlplane')) process.stderr.write(`${line}\n`);
    },
  });
  (globalThis as Record<string, unknown>)[CONTROL_PLANE_GLOBAL] = cp;
  process.env[KUBECONFIG_ENV] = cp.kubeconfigPath;
  process.env[AUDIT_LOG_ENV] = cp.auditLogPath;
  process.env[DIR_ENV] = cp.dir;
  const t = cp.timings;
  process.stderr.write(`\n[controlplane] ${cp.server} ready: apiserver ${t.apiserverMs} ms, controllers ${t.controllersMs} ms (${cp.dir})\n`);
}
