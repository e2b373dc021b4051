/**
 * GitLab's path globs (`gitops.manifest_projects[].paths[].glob`), matched exactly as GitLab v16.5
 * matched them: kas trims one leading `/` and hands the rest to doublestar v2 (`Match`), after
 * skipping every file inside a directory whose name starts with a dot. So:
 * - `*` matches any run of characters within one path segment, dotfiles included (`*.yaml` matches
 *   `.hidden.yaml` at the root, not `.gitlab/x.yaml`); `?` is one character;
 * - `**` is a globstar only as a whole segment (`a/**\/b`, `**`): zero or more segments in the
 *   middle, one or more at the end (`a/**` does not match `a`); elsewhere it is `*`, and so is a
 *   `**` segment that comes out of a `{…}` opened in that segment;
 * - `[abc]`, `[a-z]`, `[^a]` are classes (`!` is a member, not a negation; an empty class, a `-`
 *   without both ends, or an unclosed `[` is malformed); `{a,b}` alternates (nested, across `/`);
 *   `\` escapes the next character;
 * - everything else is literal: `!`, `!(…)`, `@(…)`, `+(…)`, a leading `./` (so it matches nothing);
 *   an empty segment (`a//b`, `a/`, `//a`) matches nothing either;
 * - doublestar's own corners are kept: a `*` directly followed by `{…}` leaves at least one
 *   character for what follows (`*{,x}` does not match `a`), and a run of three or more stars ending
 *   a segment needs one character.
 * doublestar finds a malformed glob only when a path reaches the malformed part; here a glob is
 * checked whole when it is compiled (UserError GIT_BAD_GLOB), so config.yaml can name its line.
 *
 * The engine owns its cost: globs come from tenants' config files and paths from tenants'
 * repositories, so nothing here backtracks (doublestar itself is exponential on `*a*a*a…b`).
 * Braces are expanded once, at compile time, under a cap on alternatives and characters; a path is
 * split into segments and walked with a set of states over the glob's segments (a `**` segment
 * stays in its state), and each segment is matched with the greedy one-star-backtrack algorithm,
 * O(glob × name) in the worst case. Globs over MAX_GLOB_LENGTH are refused and paths over
 * MAX_PATH_LENGTH never match.
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
  /** Indexes (into the globs given) of every glob matching the path, in order. */
  matching(path: string): number[];
  /** Could a file under this directory (no leading or trailing slash) match? Lets the walk prune. */
  mayContain(dir: string): boolean;
}

/** True when a file lies inside a directory whose name starts with a dot (GitLab skips those). */
export function isInHiddenDir(path: string): boolean {
  const parts = path.split('/');
  return parts.slice(0, -1).some((part) => part.startsWith('.'));
}

/** True when a directory is, or lies inside, a directory whose name starts with a dot. */
function isHiddenDir(dir: string): boolean {
  return dir.split('/').some((part) => part.startsWith('.'));
}

/** Why the glob is malformed or over a limit (doublestar's ErrBadPattern and our caps), or undefined. */
export function globProblem(glob: string): string | undefined {
  try {
    compileGlob(glob);
    return undefined;
  } catch (err) {
    return err instanceof UserError
      ? String((err.data as { why?: string } | undefined)?.why ?? err.message)
      : String(err);
  }
}

/** Build a matcher for a list of GitLab globs; a bad glob is a UserError (GIT_BAD_GLOB) naming it. */
export function createPathMatcher(globs: readonly string[]): PathMatcher {
  const compiled: Pattern[][] = [];
  let total = 0;
  for (const glob of globs) {
    const patterns = compileGlob(glob);
    total += patterns.length;
    if (total > MAX_MATCHER_ALTERNATIVES) {
      throw badGlob(
        glob,
        `the globs expand to more than ${MAX_MATCHER_ALTERNATIVES} alternatives in all; use fewer or simpler globs`,
      );
    }
    compiled.push(patterns);
  }
  const usable = (path: string): boolean => path !== '' && path.length <= MAX_PATH_LENGTH && !isInHiddenDir(path);
  return {
    matches(path) {
      if (!usable(path)) return false;
      const segments = splitPath(path);
      return compiled.some((patterns) => globMatches(patterns, segments));
    },
    matching(path) {
      if (!usable(path)) return [];
      const segments = splitPath(path);
      const out: number[] = [];
      compiled.forEach((patterns, i) => {
        if (globMatches(patterns, segments)) out.push(i);
      });
      return out;
    },
    mayContain(dir) {
      if (dir.length > MAX_PATH_LENGTH || isHiddenDir(dir)) return false;
      const segments = splitPath(dir);
      return compiled.some((patterns) =>
        patterns.some((p) => {
          const states = walk(p, segments);
          // A file below `dir` needs at least one more segment: some glob segment must still be open.
          return states !== undefined && states.subarray(0, p.length).includes(1);
        }),
      );
    },
  };
}

// ---- compiled form ----

/**
 * One token of a segment: a literal code point, `?`, `*`, a class, or `more` (zero-width: at
 * least one character is left), which follows a `*` that doublestar lets take all but one.
 */
type Token =
  | { kind: 'char'; cp: number }
  | { kind: 'any' }
  | { kind: 'star' }
  | { kind: 'more' }
  | { kind: 'class'; negated: boolean; ranges: [number, number][] };

/**
 * A glob segment: `**` (any number of path segments) or a sequence of tokens for one segment;
 * `key`: its doublestar step (Alternative), `added`: the one-segment `*` put before a trailing `**`.
 */
type Segment = { globstar: true } | { globstar: false; tokens: Token[]; key: string; added?: true };

/** One brace-free alternative of a glob, split on `/`. */
type Pattern = Segment[];

function badGlob(glob: string, why: string): UserError {
  const shown = glob.length > 80 ? `${glob.slice(0, 80)}…` : glob;
  return new UserError('GIT_BAD_GLOB', `glob "${shown}": ${why}`, { data: { glob: shown, why } });
}

/** Every alternative of one glob, compiled. */
function compileGlob(glob: string): Pattern[] {
  const trimmed = glob.startsWith('/') ? glob.slice(1) : glob; // kas trims one leading slash
  const out: Pattern[] = [];
  for (const alternative of expandAlternatives(trimmed, glob)) out.push(compileAlternative(glob, alternative));
  return out;
}

// ---- braces ----

/**
 * Marks where a `{` opened in an expanded alternative: doublestar reads `**` as a globstar only
 * when it is the whole segment before that segment's braces are expanded, and lets a `*` right
 * before a `{` take all but one character. A literal U+E000 in a glob is escaped, so it cannot pose.
 */
const OPEN = '\uE000';

/**
 * A parsed glob: literal runs (escapes kept raw, with the offset in the glob of each unescaped `/`)
 * and alternations of sequences (`id`: the offset of their `{`).
 */
type Piece = { text: string; slashes: number[] } | { id: number; options: Piece[][] };

/**
 * One expanded alternative and, for each unescaped `/` in it, which pattern doublestar would be
 * left with there: the `/`'s offset in the glob plus the options chosen for the groups still open.
 * Alternatives with the same key at a segment are one doublestar step (see globMatches).
 */
interface Alternative {
  text: string;
  keys: string[];
}

/** Every brace-free alternative of the glob (deduplicated), under MAX_ALTERNATIVES and MAX_EXPANDED_CHARS. */
export function expandBraces(glob: string, original = glob): string[] {
  return [
    ...new Set(
      expandAlternatives(glob, original).map((a) => a.text.replace(/\\?\uE000/g, (m) => (m.length === 2 ? OPEN : ''))),
    ),
  ];
}

function expandAlternatives(glob: string, original: string): Alternative[] {
  if (original.length > MAX_GLOB_LENGTH)
    throw badGlob(original, `${original.length} characters, over the limit of ${MAX_GLOB_LENGTH}`);
  const sequence = parseBraces(glob, original);
  const { count, chars } = measure(sequence);
  if (count > MAX_ALTERNATIVES)
    throw badGlob(
      original,
      `its {…} alternatives expand to more than ${MAX_ALTERNATIVES} globs; split it or simplify it`,
    );
  if (chars > MAX_EXPANDED_CHARS)
    throw badGlob(
      original,
      `its {…} alternatives expand to more than ${MAX_EXPANDED_CHARS} characters; split it or simplify it`,
    );
  const seen = new Set<string>();
  return expand(sequence, []).filter((a) => {
    const id = `${a.text}\0${a.keys.join('\0')}`;
    return seen.has(id) ? false : (seen.add(id), true);
  });
}

/** Braces as doublestar splits them: escapes respected, classes not (a `,` in `[…]` splits). */
function parseBraces(glob: string, original: string): Piece[] {
  // An explicit stack instead of recursion: the nesting depth is the tenant's to choose.
  const root: Piece[] = [];
  const stack: { id: number; options: Piece[][]; seq: Piece[] }[] = [];
  let seq = root;
  let text = '';
  let slashes: number[] = [];
  const flush = (): void => {
    if (text) seq.push({ text, slashes });
    text = '';
    slashes = [];
  };
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '\\') {
      if (i + 1 >= glob.length) throw badGlob(original, 'ends with a lone "\\" (write "\\\\" for a backslash)');
      text += glob.slice(i, i + 2);
      i++;
    } else if (c === OPEN) {
      text += `\\${OPEN}`;
    } else if (c === '{') {
      text += OPEN;
      flush();
      const group = { id: i, options: [[]] as Piece[][], seq };
      stack.push(group);
      seq = group.options[0];
    } else if (c === ',' && stack.length > 0) {
      flush();
      const group = stack[stack.length - 1];
      seq = [];
      group.options.push(seq);
    } else if (c === '}' && stack.length > 0) {
      flush();
      const group = stack.pop() as { id: number; options: Piece[][]; seq: Piece[] };
      seq = group.seq;
      seq.push({ id: group.id, options: group.options });
    } else {
      if (c === '/') slashes.push(i);
      text += c;
    }
  }
  if (stack.length > 0) throw badGlob(original, '"{" is never closed (write "\\{" for a literal brace)');
  flush();
  return root;
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

/** Every alternative of a sequence; `open`: the groups around it, as `id:option`. */
function expand(sequence: Piece[], open: string[]): Alternative[] {
  let out: Alternative[] = [{ text: '', keys: [] }];
  for (const piece of sequence) {
    if ('text' in piece) {
      const keys = piece.slashes.map((offset) => `${offset}|${open.join(',')}`);
      out = out.map((a) => ({ text: a.text + piece.text, keys: [...a.keys, ...keys] }));
      continue;
    }
    const tails = piece.options.flatMap((option, k) => expand(option, [...open, `${piece.id}:${k}`]));
    out = out.flatMap((a) => tails.map((t) => ({ text: a.text + t.text, keys: [...a.keys, ...t.keys] })));
  }
  return out;
}

// ---- segments ----

/** One compiled alternative (an empty segment, as in `a//b`, compiles to one matching no name). */
function compileAlternative(glob: string, alternative: Alternative): Pattern {
  const pattern: Pattern = [];
  for (const { raw, key } of splitRaw(glob, alternative)) {
    if (raw === '**') {
      // `**/**` is one `**`.
      if (!pattern[pattern.length - 1]?.globstar) pattern.push({ globstar: true });
      continue;
    }
    pattern.push({ globstar: false, tokens: raw === '' ? [{ kind: 'more' }] : compileSegment(glob, raw), key });
  }
  // A trailing `**` matches one or more segments (doublestar: `a/**` does not match `a`).
  if (pattern.length > 1 && pattern[pattern.length - 1].globstar) {
    pattern.splice(pattern.length - 1, 0, { globstar: false, tokens: [{ kind: 'star' }], key: '', added: true });
  }
  return pattern;
}

/** End of the class opening at `start`: doublestar's first `]` not right after a `\`, or -1. */
function classEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) if (text[i] === ']' && text[i - 1] !== '\\') return i;
  return -1;
}

/** Split a brace-free alternative on unescaped `/` outside classes, each segment with its step key. */
function splitRaw(glob: string, alternative: Alternative): { raw: string; key: string }[] {
  const { text, keys } = alternative;
  const parts: { raw: string; key: string }[] = [];
  let key = 'start';
  let slash = 0; // unescaped `/` seen, inside classes too (the keys count those)
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\') {
      current += text.slice(i, i + 2);
      i++;
    } else if (c === '[') {
      const end = classEnd(text, i);
      if (end < 0) throw badGlob(glob, `"[" is never closed (write "\\[" for a literal bracket)`);
      for (let j = i + 1; j < end; j++) {
        if (text[j] === '\\') j++;
        else if (text[j] === '/') slash++;
      }
      current += text.slice(i, end + 1);
      i = end;
    } else if (c === '/') {
      parts.push({ raw: current, key });
      key = keys[slash++] ?? String(slash);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push({ raw: current, key });
  return parts;
}

const BACKSLASH = 0x5c;
const STAR = 0x2a;
const QUESTION = 0x3f;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const DASH = 0x2d;
const CARET = 0x5e;
const OPEN_CP = 0xe000;

function compileSegment(glob: string, raw: string): Token[] {
  const tokens: Token[] = [];
  const cps = Array.from(raw, (ch) => ch.codePointAt(0) as number);
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i];
    if (c === BACKSLASH) {
      tokens.push({ kind: 'char', cp: cps[++i] });
    } else if (c === OPEN_CP) {
      continue; // where a `{` opened: only stars look at it
    } else if (c === STAR) {
      let run = 1;
      while (cps[i + 1] === STAR) {
        run++;
        i++;
      }
      const next = cps[i + 1];
      if (next === OPEN_CP) tokens.push({ kind: 'star' }, { kind: 'more' });
      else if (next === undefined && run >= 3) tokens.push({ kind: 'any' }, { kind: 'star' });
      else tokens.push({ kind: 'star' });
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

/** A class as doublestar reads it: `^` negates, `\` escapes, `lo-hi` ranges; `-` needs both ends. */
function compileClass(glob: string, cps: number[], start: number): { token: Token; end: number } {
  let end = start + 1;
  while (end < cps.length && !(cps[end] === CLOSE_BRACKET && cps[end - 1] !== BACKSLASH)) end++;
  const body = cps.slice(start + 1, end);
  if (body.length === 0) throw badGlob(glob, 'a character class "[]" is empty (write "\\[\\]" for literal brackets)');
  const negated = body[0] === CARET;
  const ranges: [number, number][] = [];
  const dash = (): UserError =>
    badGlob(glob, 'a "-" in a character class needs a character on both sides (write "\\-" for a dash)');
  for (let i = negated ? 1 : 0; i < body.length;) {
    let lo = body[i++];
    if (lo === DASH) throw dash();
    if (lo === BACKSLASH) {
      if (i >= body.length) throw badGlob(glob, 'a character class ends with a lone "\\"');
      lo = body[i++];
    }
    let hi = lo;
    if (body[i] === DASH) {
      i++;
      if (i >= body.length || body[i] === DASH) throw dash();
      hi = body[i++];
      if (hi === BACKSLASH) {
        if (i >= body.length) throw badGlob(glob, 'a character class ends with a lone "\\"');
        hi = body[i++];
      }
    }
    ranges.push([lo, hi]); // a reversed range matches nothing, as in doublestar
  }
  return { token: { kind: 'class', negated, ranges }, end };
}

// ---- matching ----

function splitPath(path: string): number[][] {
  return path.split('/').map((s) => Array.from(s, (ch) => ch.codePointAt(0) as number));
}

/**
 * Does a path match one glob (all its alternatives)? The segments but the last are walked per
 * alternative; the last one is doublestar's last step, where one wrinkle is kept: alternatives of
 * the same step (same key) are matched together, and when one of them matches the name but wants
 * more segments, the step fails even if another matched the name fully (`{*,a/b}` does not match
 * `a`, and `{*.yaml,**\/*.yaml}` matches no file at the root).
 */
function globMatches(patterns: readonly Pattern[], segments: number[][]): boolean {
  const head = segments.slice(0, -1);
  const last = segments[segments.length - 1];
  const full = new Set<string>();
  const more = new Set<string>();
  for (const p of patterns) {
    const states = walk(p, head);
    if (!states) continue;
    for (let j = 0; j < p.length; j++) {
      const s = p[j];
      if (!states[j]) continue;
      if (s.globstar) {
        if (j === p.length - 1) return true; // `**` alone
        continue;
      }
      if (!matchSegment(s.tokens, last)) continue;
      if (s.added) return true; // the one segment a trailing `**` needs
      if (j === p.length - 1) full.add(s.key);
      else more.add(s.key);
    }
  }
  for (const key of full) if (!more.has(key)) return true;
  return false;
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
    if (segment.length === 0) return undefined; // `a//b` or a trailing `/`: no file has such a path
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
 * start from the later star's position), so the loop runs at most |tokens| × |name| times. A
 * `more` holds inside the loop (a character is left) and fails after it.
 */
function matchSegment(tokens: readonly Token[], name: readonly number[]): boolean {
  let t = 0;
  let n = 0;
  let starT = -1;
  let starN = 0;
  while (n < name.length) {
    const token = tokens[t];
    if (token?.kind === 'star') {
      starT = t++;
      starN = n;
    } else if (token?.kind === 'more') {
      t++;
    } else if (token !== undefined && matchOne(token, name[n])) {
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
