/**
 * What `apply` and `diff` share: reading `-f DIR|FILE` into manifest files, loading credentials
 * (flag, KUBECONFIG, ~/.kube/config, in-cluster), building the sync unit with GitLab's defaults,
 * and the common options with their environment fallbacks.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { UserError } from '../../common/errors.js';
import { INVENTORY_POLICIES, PROPAGATION_POLICIES } from '../../protocol/vocabulary.js';
import type { SourceFile, SyncUnit, UnitConfig } from '../reconcile/types.js';
import { defaultCredentials, SERVICE_ACCOUNT_DIR, type KubeCredentials } from '../kube/credentials.js';
import { ProblemCode } from '../../protocol/problems.js';

const MANIFEST_EXT = /\.(ya?ml|json)$/i;

/** Reads one file, or every *.yaml/*.yml/*.json under a directory (dot-directories skipped, as GitLab's globs do). */
export async function readManifestFiles(inputs: string[]): Promise<SourceFile[]> {
  const files: SourceFile[] = [];
  for (const input of inputs) {
    let st;
    try {
      st = await stat(input);
    } catch {
      throw new UserError(ProblemCode.INPUT_NOT_FOUND, `${input}: no such file or directory`);
    }
    if (st.isFile()) {
      files.push({ path: input, content: await readFile(input, 'utf8') });
      continue;
    }
    const walk = async (dir: string): Promise<void> => {
      const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
      for (const e of entries) {
        if (e.name.startsWith('.')) continue;
        const full = path.join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (e.isFile() && MANIFEST_EXT.test(e.name))
          files.push({ path: path.relative(process.cwd(), full) || full, content: await readFile(full, 'utf8') });
      }
    };
    await walk(input);
  }
  return files;
}

/**
 * Credentials from the flag, else KUBECONFIG (several files merged) / ~/.kube/config / in-cluster
 * (client-node's default order), read without loading client-node.
 */
export function loadCredentials(
  file?: string,
  env: Record<string, string | undefined> = process.env,
): Promise<KubeCredentials> {
  return defaultCredentials(file, env, env.GITOPS_AGENT_SERVICEACCOUNT_DIR ?? SERVICE_ACCOUNT_DIR);
}

/** Inventory name for a path when none is given: stable per absolute path, readable. */
export function defaultInventoryName(inputs: string[]): string {
  const abs = inputs
    .map((i) => path.resolve(i))
    .sort()
    .join('\n');
  const base =
    path
      .basename(inputs[0] ?? 'manifests')
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 30) || 'manifests';
  return `gitops-cli-${base}-${createHash('sha256').update(abs).digest('hex').slice(0, 8)}`;
}

export interface CommonFlags {
  filename: string[];
  kubeconfig?: string;
  namespace: string;
  inventory?: string;
  prune?: boolean;
  propagationPolicy: UnitConfig['prunePropagationPolicy'];
  inventoryPolicy: UnitConfig['inventoryPolicy'];
  stateDir?: string;
}

/** Adds the options `apply` and `diff` share, with their environment fallbacks. */
export function addCommonOptions(cmd: Command): Command {
  return cmd
    .requiredOption(
      '-f, --filename <path...>',
      'manifest file or directory (*.yaml, *.yml, *.json, recursively; dot-directories skipped)',
    )
    .addOption(
      new Option(
        '--kubeconfig <file>',
        'kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, then in-cluster credentials)',
      ),
    )
    .addOption(
      new Option('-n, --namespace <ns>', 'namespace for objects without one, and where the inventory ConfigMap lives')
        .env('GITOPS_NAMESPACE')
        .default('default'),
    )
    .addOption(
      new Option(
        '--inventory <name>',
        'name of the inventory ConfigMap recording what this directory owns (default: derived from the path)',
      ).env('GITOPS_INVENTORY'),
    )
    .addOption(
      new Option(
        '--inventory-policy <policy>',
        'who may be taken over: must_match (only objects of this inventory), adopt_if_no_inventory, adopt_all',
      )
        .choices(INVENTORY_POLICIES)
        .default('adopt_if_no_inventory'),
    )
    .addOption(
      new Option('--propagation-policy <policy>', 'how pruned objects are deleted')
        .choices(PROPAGATION_POLICIES)
        .default('background'),
    )
    .addOption(
      new Option(
        '--state-dir <dir>',
        'folder for cached server knowledge (normalised forms, OpenAPI) between runs',
      ).env('GITOPS_STATE_DIR'),
    );
}

/** The sync unit the engine applies for these flags. */
export async function unitFromFlags(
  flags: CommonFlags,
  options: { prune: boolean; dryRunStrategy: UnitConfig['dryRunStrategy'] },
): Promise<SyncUnit> {
  const files = await readManifestFiles(flags.filename);
  return {
    name: flags.inventory ?? defaultInventoryName(flags.filename),
    namespace: flags.namespace,
    files,
    config: {
      defaultNamespace: flags.namespace,
      dryRunStrategy: options.dryRunStrategy,
      prune: options.prune,
      prunePropagationPolicy: flags.propagationPolicy,
      inventoryPolicy: flags.inventoryPolicy,
    },
  };
}
