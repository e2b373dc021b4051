import { describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isProblemCode, ProblemCode } from './problems.js';

const SRC = fileURLToPath(new URL('..', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [path] : [];
  });
}

// An error constructed with a code (`new UserError('CODE', …)`, `new KubeApiError('user', 'CODE', …)`)
// and a problem literal (`{ code: 'CODE', …}`). zod's own issue codes ('custom') and an internal
// marker of isomorphic-git's HTTP errors are not problems, nor an error kind followed by a
// ProblemCode constant.
const THROWN = /new [A-Za-z]*Error\(\s*(?:'(?:user|retryable|transient)',\s*)?'([A-Za-z_]+)'/g;
const LITERAL = /\{\s*code: '([A-Za-z_]+)'/g;
const NOT_PROBLEMS = new Set(['custom', 'HttpError', 'user', 'retryable', 'transient']);

function codesIn(text: string): string[] {
  return [...text.matchAll(THROWN), ...text.matchAll(LITERAL)].map((m) => m[1]).filter((c) => !NOT_PROBLEMS.has(c));
}

describe('problem codes', () => {
  it('are one casing, each its own key', () => {
    for (const [key, code] of Object.entries(ProblemCode)) {
      expect(code).toBe(key);
      expect(code).toMatch(/^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/);
    }
  });

  it('tells catalogue codes from others', () => {
    expect(isProblemCode('APPLY_FAILED')).toBe(true);
    expect(isProblemCode('apply_failed')).toBe(false);
  });

  it('finds codes in source text the way the tree check below reads it', () => {
    expect(
      codesIn(`throw new UserError('A_B', 'x'); new KubeApiError('retryable', 'C', id); ({ code: 'D', message })`),
    ).toEqual(['A_B', 'C', 'D']);
  });

  it('covers every code the tree throws or reports', () => {
    const unknown: string[] = [];
    for (const file of sources(SRC)) {
      for (const code of codesIn(readFileSync(file, 'utf8')))
        if (!isProblemCode(code)) unknown.push(`${file.slice(SRC.length)}: ${code}`);
    }
    expect(unknown).toEqual([]);
  });
});
