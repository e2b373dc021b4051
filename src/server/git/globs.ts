/**
 * GitLab-style path globs (`gitops.manifest_projects[].paths[].glob`): doublestar semantics over
 * repository paths. A leading `/` anchors at the repository root, and so does a glob without one
 * (GitLab matches the whole path either way); `*` stays within one directory, `**` matches across
 * directories (also none), `{a,b}` alternates. Entries whose name starts with a dot (`.git`,
 * `.gitlab`, `.github`, dotfiles) are skipped whatever the glob says, so CI files and the agent
 * configuration are never applied to a cluster.
 */
import picomatch from 'picomatch';
import { UserError } from '../../common/errors.js';

export interface PathMatcher {
  /** Does the repository path (no leading slash) match any glob? */
  matches(path: string): boolean;
  /** Could a file under this directory (no leading or trailing slash) match? Lets the walk prune. */
  mayContain(dir: string): boolean;
}

/** True when a path has a component starting with a dot. */
export function isHiddenPath(path: string): boolean {
  return path.split('/').some((part) => part.startsWith('.'));
}

/** Build a matcher for a list of GitLab globs; a bad glob is a UserError naming it. */
export function createPathMatcher(globs: readonly string[]): PathMatcher {
  const normalised = globs.map((g) => g.replace(/^\/+/, ''));
  const tests = normalised.map((glob) => {
    try {
      return picomatch(glob, { dot: true, strictSlashes: true });
    } catch (err) {
      throw new UserError('GIT_BAD_GLOB', `glob "${glob}": ${(err as Error).message}`, { cause: err });
    }
  });
  // The literal leading directories of each glob (`manifests/prod` for `manifests/prod/**/*.yaml`).
  const bases = normalised.map((glob) => picomatch.scan(glob).base.replace(/\/+$/, ''));
  return {
    matches(path) {
      return !isHiddenPath(path) && tests.some((t) => t(path));
    },
    mayContain(dir) {
      if (isHiddenPath(dir)) return false;
      return bases.some((b) => b === '' || b === dir || b.startsWith(`${dir}/`) || dir.startsWith(`${b}/`));
    },
  };
}
