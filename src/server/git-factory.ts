/**
 * Chooses the Git source for the serve options: smart HTTP against a Git host (--git-base-url,
 * clones cached under `<state-dir>/git`) or local repositories read in place (--git-root), and
 * times its checks into the fetch-duration metric. Kept apart so serve.ts can be tested with any
 * GitSource (ServerDeps.gitSource).
 */
import path from 'node:path';
import { createGitSource } from './git/source.js';
import type { GitOptions } from './options.js';
import type { GitSource } from './ports.js';
import type { GitSourceFactoryContext } from './serve.js';

/** The Git source for `serve` (the real ServerDeps.gitSource). */
export async function gitSourceForServe(options: GitOptions, context: GitSourceFactoryContext): Promise<GitSource> {
  const onCheck = (e: { durationMs: number; ok: boolean }): void =>
    context.metrics.fetchDuration.observe({ result: e.ok ? 'ok' : 'error' }, e.durationMs / 1000);
  const common = { pollIntervalMs: context.pollIntervalMs, logger: context.logger, onCheck };
  if (options.mode === 'http') {
    return createGitSource({
      ...common,
      baseUrl: options.baseUrl,
      token: options.token,
      cacheDir: path.join(context.stateDir, 'git'),
    });
  }
  return createGitSource({ ...common, root: options.root });
}
