/**
 * GitLab-style path globs (`gitops.manifest_projects[].paths[].glob`): doublestar semantics over
 * repository paths. A leading `/` anchors at the repository root, and so does a glob without one
 * (GitLab matches the whole path either way); `*` stays within one directory, `**` as a whole
 * path segment matches across directories (also none), `?` is one character, `[abc]`, `[a-z]`,
 * `[!a]`/`[^a]` are character classes, `{a,b}` alternates (nesting allowed, also across `/`), and
 * `\` escapes the next character. Anything else is literal: `!`, `@(…)`, `+(…)` and the other
 * extglobs have no special meaning (as in GitLab). Entries whose name starts with a dot (`.git`,
 * `.gitlab`, `.github`, dotfiles) are skipped whatever the glob says, so CI files and the agent
 * configuration are never applied to a cluster.
 *
 * The engine owns its cost: globs come from tenants' config files and paths from tenants'
 * repositories, so nothing here backtracks. Braces are expanded once, at compile time, under a
 * cap on alternatives and characters; a path is split into segments and walked with a set of
 * states over the glob's segments (a `**` segment stays in its state), and each segment is
 * matched with the greedy one-star-backtrack algorithm, O(glob × name) in the worst case. Globs
 * over MAX_GLOB_LENGTH are refused and paths over MAX_PATH_LENGTH never match.
 */
import { UserError } from '../../common/errors.js';

/** Longest glob accepted (characters). */
export const MAX_GLOB_LENGTH = 1024;
/** Longest repository path matched (characters); longer ones never match (read.ts refuses them). */
export const MAX_PATH_LENGTH = 4096;
/** Most alternatives one glob may expand to through `{…}`. */
export const MAX_ALTERNATIVES = 256;
/** Most characters one glob may expand to through `{…}`, over all its alternatives. */
export const MAX_EXPANDED_CHARS = 16 * 1024;
/** Most alternatives over all the globs of one matcher. */
export const MAX_MATCHER_ALTERNATIVES = 2048;

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

/** Build a matcher for a list of GitLab globs; a bad glob is a UserError (GIT_BAD_GLOB) naming it. */
export function createPathMatcher(globs: readonly string[]): PathMatcher {
  const patterns: Pattern[] = [];
  for (const glob of globs) {
    for (const alternative of expandBraces(glob)) patterns.push(compileAlternative(glob, alternative));
    if (patterns.length > MAX_MATCHER_ALTERNATIVES) {
      throw badGlob(glob, `the globs expand to more than ${MAX_MATCHER_ALTERNATIVES} alternatives in all; use fewer or simpler globs`);
    }
  }
  return {
    matches(path) {
      if (path.length > MAX_PATH_LENGTH || isHiddenPath(path)) return false;
      const segments = splitPath(path);
      return patterns.some((p) => walk(p, segments)?.[p.length] === 1);
    },
    mayContain(dir) {
      if (dir.length > MAX_PATH_LENGTH || isHiddenPath(dir)) return false;
      const segments = splitPath(dir);
      return patterns.some((p) => {
        const states = walk(p, segments);
        // A file below `dir` needs at least one more segment: some glob segment must still be open.
        return states !== undefined && states.subarray(0, p.length).includes(1);
      });
    },
  };
}

// ---- compiled form ----

/** One token of a segment: a literal code point, `?`, `*`, or a class. */
type Token = { kind: 'char'; cp: number } | { kind: 'any' } | { kind: 'star' } | { kind: 'class'; negated: boolean; ranges: [number, number][] };

/** A glob segment: `**` (any number of path segments) or a sequence of tokens for one segment. */
type Segment = { globstar: true } | { globstar: false; tokens: Token[] };

/** One brace-free alternative of a glob, split on `/`. */
type Pattern = Segment[];

function badGlob(glob: string, why: string): UserError {
  const shown = glob.length > 80 ? `${glob.slice(0, 80)}…` : glob;
  return new UserError('GIT_BAD_GLOB', `glob "${shown}": ${why}`, { data: { glob: shown } });
}

// ---- braces ----

/** A parsed glob: literal runs (escapes and classes kept raw) and alternations of sequences. */
type Piece = { text: string } | { options: Piece[][] };

/** Every brace-free alternative of the glob (deduplicated), under MAX_ALTERNATIVES and MAX_EXPANDED_CHARS. */
export function expandBraces(glob: string): string[] {
  if (glob.length > MAX_GLOB_LENGTH) throw badGlob(glob, `${glob.length} characters, over the limit of ${MAX_GLOB_LENGTH}`);
  const sequence = parseBraces(glob);
  const { count, chars } = measure(sequence);
  if (count > MAX_ALTERNATIVES) throw badGlob(glob, `its {…} alternatives expand to more than ${MAX_ALTERNATIVES} globs; split it or simplify it`);
  if (chars > MAX_EXPANDED_CHARS) throw badGlob(glob, `its {…} alternatives expand to more than ${MAX_EXPANDED_CHARS} characters; split it or simplify it`);
  return [...new Set(expand(sequence))];
}

function parseBraces(glob: string): Piece[] {
  // An explicit stack instead of recursion: the nesting depth is the tenant's to choose.
  const root: Piece[] = [];
  const stack: { options: Piece[][]; seq: Piece[] }[] = [];
  let seq = root;
  let text = '';
  const flush = (): void => {
    if (text) seq.push({ text });
    text = '';
  };
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '\\') {
      if (i + 1 >= glob.length) throw badGlob(glob, 'ends with a lone "\\"');
      text += glob.slice(i, i + 2);
      i++;
    } else if (c === '[') {
      const end = classEnd(glob, i);
      if (end < 0) throw badGlob(glob, `"[" at character ${i + 1} is never closed (write "\\[" for a literal bracket)`);
      text += glob.slice(i, end + 1);
      i = end;
    } else if (c === '{') {
      flush();
      const group = { options: [[]] as Piece[][], seq };
      stack.push(group);
      seq = group.options[0];
    } else if (c === ',' && stack.length > 0) {
      flush();
      const group = stack[stack.length - 1];
      seq = [];
      group.options.push(seq);
    } else if (c === '}' && stack.length > 0) {
      flush();
      const group = stack.pop() as { options: Piece[][]; seq: Piece[] };
      seq = group.seq;
      seq.push({ options: group.options });
    } else {
      text += c;
    }
  }
  if (stack.length > 0) throw badGlob(glob, '"{" is never closed (write "\\{" for a literal brace)');
  flush();
  return root;
}

/** Index of the `]` closing the class that opens at `start`, or -1. */
function classEnd(glob: string, start: number): number {
  let i = start + 1;
  if (glob[i] === '!' || glob[i] === '^') i++;
  if (glob[i] === ']') i++; // `[]a]`: a leading `]` is a member
  for (; i < glob.length; i++) {
    if (glob[i] === '\\') i++;
    else if (glob[i] === ']') return i;
  }
  return -1;
}

const SATURATED = Number.MAX_SAFE_INTEGER;
const sat = (n: number): number => Math.min(n, SATURATED);

/** How many alternatives a sequence expands to, and their total length (both saturating). */
function measure(sequence: Piece[]): { count: number; chars: number } {
  let count = 1;
  let chars = 0;
  for (const piece of sequence) {
    if ('text' in piece) {
      chars = sat(chars + count * piece.text.length);
      continue;
    }
    let c = 0;
    let l = 0;
    for (const option of piece.options) {
      const m = measure(option);
      c = sat(c + m.count);
      l = sat(l + m.chars);
    }
    chars = sat(sat(chars * c) + sat(count * l));
    count = sat(count * c);
  }
  return { count, chars };
}

function expand(sequence: Piece[]): string[] {
  let out = [''];
  for (const piece of sequence) {
    if ('text' in piece) {
      out = out.map((s) => s + piece.text);
      continue;
    }
    const tails = piece.options.flatMap(expand);
    out = out.flatMap((s) => tails.map((t) => s + t));
  }
  return out;
}

// ---- segments ----

function compileAlternative(glob: string, alternative: string): Pattern {
  const pattern: Pattern = [];
  for (const raw of splitRaw(alternative)) {
    if (raw === '**') {
      // `**/**` is one `**`.
      if (!pattern[pattern.length - 1]?.globstar) pattern.push({ globstar: true });
      continue;
    }
    pattern.push({ globstar: false, tokens: compileSegment(glob, raw) });
  }
  return pattern;
}

/** Split a brace-free glob on unescaped `/` outside classes; empty segments (leading `/`, `//`) go. */
function splitRaw(alternative: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < alternative.length; i++) {
    const c = alternative[i];
    if (c === '\\' && alternative[i + 1] === '/') {
      // An escaped slash is still a separator: no file name contains one.
      parts.push(current);
      current = '';
      i++;
    } else if (c === '\\') {
      current += alternative.slice(i, i + 2);
      i++;
    } else if (c === '[') {
      const end = classEnd(alternative, i);
      current += alternative.slice(i, end + 1);
      i = end;
    } else if (c === '/') {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts.filter((p) => p !== '');
}

function compileSegment(glob: string, raw: string): Token[] {
  const tokens: Token[] = [];
  const cps = Array.from(raw, (ch) => ch.codePointAt(0) as number);
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i];
    if (c === BACKSLASH) {
      tokens.push({ kind: 'char', cp: cps[++i] });
    } else if (c === STAR) {
      if (tokens[tokens.length - 1]?.kind !== 'star') tokens.push({ kind: 'star' }); // `a**b` is `a*b`
    } else if (c === QUESTION) {
      tokens.push({ kind: 'any' });
    } else if (c === OPEN_BRACKET) {
      const { token, end } = compileClass(glob, cps, i);
      tokens.push(token);
      i = end;
    } else {
      tokens.push({ kind: 'char', cp: c });
    }
  }
  return tokens;
}

const BACKSLASH = 0x5c;
const STAR = 0x2a;
const QUESTION = 0x3f;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const DASH = 0x2d;
const SLASH = 0x2f;

function compileClass(glob: string, cps: number[], start: number): { token: Token; end: number } {
  let i = start + 1;
  const negated = cps[i] === 0x21 || cps[i] === 0x5e; // `!` or `^`
  if (negated) i++;
  const ranges: [number, number][] = [];
  let first = true;
  for (; i < cps.length; i++) {
    if (cps[i] === CLOSE_BRACKET && !first) break;
    first = false;
    let lo = cps[i];
    if (lo === BACKSLASH) lo = cps[++i];
    let hi = lo;
    if (cps[i + 1] === DASH && i + 2 < cps.length && cps[i + 2] !== CLOSE_BRACKET) {
      hi = cps[i + 2];
      if (hi === BACKSLASH) hi = cps[i + 3];
      i += cps[i + 2] === BACKSLASH ? 3 : 2;
    }
    if (lo === SLASH || hi === SLASH) throw badGlob(glob, 'a character class cannot match "/"');
    if (hi < lo) throw badGlob(glob, `range "${String.fromCodePoint(lo)}-${String.fromCodePoint(hi)}" is reversed`);
    ranges.push([lo, hi]);
  }
  return { token: { kind: 'class', negated, ranges }, end: i };
}

// ---- matching ----

function splitPath(path: string): number[][] {
  return path
    .split('/')
    .filter((s) => s !== '')
    .map((s) => Array.from(s, (ch) => ch.codePointAt(0) as number));
}

/**
 * The states open after consuming all `segments` (state i: glob segment i is next; state
 * `pattern.length`: the whole glob matched), or undefined when none is. Each step costs at most
 * one segment match per state, so a walk is O(glob segments × path segments) segment matches.
 */
function walk(pattern: Pattern, segments: number[][]): Uint8Array | undefined {
  let states = new Uint8Array(pattern.length + 1);
  states[0] = 1;
  close(pattern, states);
  for (const segment of segments) {
    const next = new Uint8Array(pattern.length + 1);
    let any = false;
    for (let i = 0; i < pattern.length; i++) {
      if (!states[i]) continue;
      const s = pattern[i];
      if (s.globstar) {
        next[i] = 1;
        any = true;
      } else if (matchSegment(s.tokens, segment)) {
        next[i + 1] = 1;
        any = true;
      }
    }
    if (!any) return undefined;
    close(pattern, next);
    states = next;
  }
  return states;
}

/** A `**` may match no segment: its state also opens the next one. */
function close(pattern: Pattern, states: Uint8Array): void {
  for (let i = 0; i < pattern.length; i++) if (states[i] && pattern[i].globstar) states[i + 1] = 1;
}

function matchOne(t: Token, cp: number): boolean {
  switch (t.kind) {
    case 'char':
      return t.cp === cp;
    case 'any':
      return true;
    case 'class':
      return t.ranges.some(([lo, hi]) => cp >= lo && cp <= hi) !== t.negated;
    default:
      return false;
  }
}

/**
 * One segment against one file or directory name. Greedy: on a mismatch, only the most recent `*`
 * takes one more character (earlier stars never need to, since any later match of the rest could
 * start from the later star's position), so the loop runs at most |tokens| × |name| times.
 */
function matchSegment(tokens: readonly Token[], name: readonly number[]): boolean {
  let t = 0;
  let n = 0;
  let starT = -1;
  let starN = 0;
  while (n < name.length) {
    if (t < tokens.length && tokens[t].kind === 'star') {
      starT = t++;
      starN = n;
    } else if (t < tokens.length && matchOne(tokens[t], name[n])) {
      t++;
      n++;
    } else if (starT >= 0) {
      t = starT + 1;
      n = ++starN;
    } else {
      return false;
    }
  }
  while (t < tokens.length && tokens[t].kind === 'star') t++;
  return t === tokens.length;
}
