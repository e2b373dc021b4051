/**
 * What a project id may be: a GitLab project path (`group/subgroup/name`), checked before it is
 * joined to a URL, a cache folder name or an authorization rule. The rules follow GitLab's
 * (lib/gitlab/path_regex.rb and Namespace limits), slightly stricter where it costs nothing:
 * - segments separated by '/', no empty segment, no leading or trailing '/';
 * - a segment starts with a letter, digit or '_' and holds only letters, digits, '_', '-', '.';
 * - a segment is not '..' (nor any run of dots), does not end in '.', '.git' or '.atom';
 * - at most 255 characters in all, at most 20 levels (GitLab's NUMBER_OF_ANCESTORS_ALLOWED).
 *
 * Ids come from tenants (config.yaml) and operators (`agent create`), so a reason never echoes more
 * than a bounded prefix of the input.
 */
import { UserError } from '../common/errors.js';

export const MAX_PROJECT_ID_LENGTH = 255;
export const MAX_PROJECT_ID_LEVELS = 20;

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** The input as it may appear in a message: quoted, control characters escaped, cut at 80 characters. */
export function quoteId(id: string): string {
  const cut = id.length > 80 ? `${id.slice(0, 80)}…` : id;
  return JSON.stringify(cut);
}

function segmentProblem(segment: string, index: number): string | undefined {
  const where = `segment ${index + 1}`;
  if (segment === '') return `${where} is empty (no leading, trailing or doubled '/')`;
  if (!SEGMENT.test(segment)) {
    return /^[A-Za-z0-9_.-]+$/.test(segment)
      ? `${where} must start with a letter, digit or '_'`
      : `${where} may contain only letters, digits, '_', '-' and '.'`;
  }
  if (segment.includes('..')) return `${where} must not contain '..'`;
  if (segment.endsWith('.')) return `${where} must not end in '.'`;
  if (/\.(git|atom)$/i.test(segment)) return `${where} must not end in '.git' or '.atom'`;
  return undefined;
}

/** Why `id` is not a GitLab project path, or undefined when it is one. */
export function projectIdProblem(id: string): string | undefined {
  if (typeof id !== 'string') return 'a project id must be a string';
  if (id === '') return 'a project id must not be empty';
  if (id.length > MAX_PROJECT_ID_LENGTH)
    return `a project id is at most ${MAX_PROJECT_ID_LENGTH} characters (this one has ${id.length})`;
  const segments = id.split('/');
  if (segments.length > MAX_PROJECT_ID_LEVELS)
    return `a project id has at most ${MAX_PROJECT_ID_LEVELS} levels (this one has ${segments.length})`;
  for (const [i, segment] of segments.entries()) {
    const problem = segmentProblem(segment, i);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

/** Throws GIT_BAD_PROJECT_ID unless `id` is a GitLab project path. */
export function checkProjectId(id: string): void {
  const problem = projectIdProblem(id);
  if (problem !== undefined) {
    throw new UserError(
      'GIT_BAD_PROJECT_ID',
      `project ${quoteId(String(id))}: ${problem}; expected a path such as group/name`,
    );
  }
}

/**
 * Why `entry` is not an allow-list entry of an agent record, or undefined: an exact project path
 * (`group/name`) or a group prefix ending in '/' (`tenant-b/`, that group and its subgroups).
 */
export function allowEntryProblem(entry: string): string | undefined {
  if (typeof entry !== 'string') return 'an allowed project must be a string';
  const problem = projectIdProblem(entry.endsWith('/') ? entry.slice(0, -1) : entry);
  return problem === undefined
    ? undefined
    : `${problem} (expected a project path such as group/name or a group prefix such as group/)`;
}
