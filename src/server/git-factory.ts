/**
 * Chooses the Git source for the serve options: smart HTTP against a Git host (--git-base-url) or
 * local repositories (--git-root). Kept apart so serve.ts can be tested with any GitSource.
 */
import { UserError } from '../common/errors.js';
import type { GitOptions } from './options.js';
import type { GitSource } from './ports.js';
import type { GitSourceFactoryContext } from './serve.js';

export function createGitSource(options: GitOptions, _context: GitSourceFactoryContext): GitSource {
  throw new UserError('GIT_UNAVAILABLE', `Git source (${options.mode}) is not built into this version yet`);
}
