/**
 * GitLab's verdict on a config.yaml's data: the checks protojson made when it read the JSON into
 * `ConfigurationFile` (unknown keys, JSON types, duration syntax and range, at most one key of a
 * oneof) and the checks of the generated `ValidateAll` (non-empty strings, allowed values, a
 * required oneof, non-empty lists, positive durations), plus this product's bounds (schema.ts).
 * Pure: every problem comes with the path of its key, and with a hint saying what GitLab accepts
 * (did-you-mean for a key, the allowed values, the GitLab form of a duration).
 */
import { ProblemCode } from '../../protocol/problems.js';
import type { Spec } from './schema.js';
import type { YamlPath } from './yaml.js';

export interface SchemaIssue {
  code: string;
  path: YamlPath;
  /** Point at the key itself (an unknown key) rather than at its value. */
  at: 'key' | 'value';
  message: string;
  hint?: string;
}

/** protojson's range for google.protobuf.Duration: ±10,000 years. */
const MAX_DURATION_SECONDS = 315_576_000_000;

/** Seconds, as protojson reads a Duration (`3600s`, `1.5s`, `.5s`, `-1s`), or undefined. */
export function parseGitLabDuration(text: string): number | undefined {
  const m = /^(-)?(0|[1-9][0-9]*)?(?:\.([0-9]{0,9}))?s$/.exec(text);
  if (!m || (m[2] === undefined && m[3] === undefined)) return undefined;
  if (m[2] === undefined && m[3] === '') return undefined;
  const seconds = Number(m[2] ?? '0');
  if (seconds > MAX_DURATION_SECONDS) return undefined;
  const value = seconds + Number(`0.${m[3] ?? '0'}`);
  return m[1] ? -value : value;
}

/** The form GitLab wanted: `3600s` for `1h`, `5400s` for `90m`/`1h30m`, `0.5s` for `500ms`, `3600s` for `3600`. */
export function gitLabDurationFor(value: unknown): string | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return `${value}s`;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^[0-9]+(\.[0-9]+)?$/.test(text)) return `${text}s`;
  const units: Record<string, number> = { ns: 1e-9, us: 1e-6, µs: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600, d: 86400 };
  const parts = [...text.matchAll(/([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h|d)/g)];
  if (!parts.length || parts.map((p) => p[0]).join('') !== text) return undefined;
  const seconds = parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]], 0);
  return `${Number(seconds.toFixed(9))}s`;
}

/** Levenshtein distance, capped (keys are short; a tenant's key is bounded by the file). */
function distance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3 || a.length > 64 || b.length > 64) return 99;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/** The key meant, when `key` is close to one of `known` (same but for case or `-`, or one or two typos). */
export function didYouMean(key: string, known: readonly string[]): string | undefined {
  const norm = (k: string): string => k.toLowerCase().replace(/[-\s]/g, '_');
  const exact = known.find((k) => norm(k) === norm(key));
  if (exact) return exact;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = distance(norm(key), k);
    if (d <= 2 && d * 3 <= k.length && d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

const showValue = (v: unknown): string => {
  const text =
    typeof v === 'string'
      ? JSON.stringify(v)
      : Array.isArray(v)
        ? 'a list'
        : v !== null && typeof v === 'object'
          ? 'a mapping'
          : String(v);
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
};

const typeName = (v: unknown): string =>
  typeof v === 'string'
    ? 'a string'
    : typeof v === 'number'
      ? 'a number'
      : typeof v === 'boolean'
        ? 'a boolean'
        : Array.isArray(v)
          ? 'a list'
          : 'a mapping';

function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date) && !(v instanceof Uint8Array);
}

/**
 * Every problem in `value` against `spec` (empty when GitLab accepts it). `extensions`: keys this
 * product adds that GitLab does not know, by path (`gitops` → `drift`).
 */
export function validateAgainst(spec: Spec, value: unknown, limit = 200): SchemaIssue[] {
  const issues: SchemaIssue[] = [];
  const push = (issue: SchemaIssue): void => {
    if (issues.length < limit) issues.push(issue);
  };
  walk(spec, value, [], push);
  return issues;
}

type Push = (issue: SchemaIssue) => void;
const INVALID = ProblemCode.CONFIG_INVALID_VALUE;

function walk(spec: Spec, value: unknown, path: YamlPath, push: Push): void {
  if (value === null || value === undefined) return; // protojson: null is "not set"
  switch (spec.t) {
    case 'string':
      return checkString(spec, value, path, push);
    case 'bool':
      if (typeof value !== 'boolean') {
        push({
          code: INVALID,
          path,
          at: 'value',
          message: `must be true or false, not ${showValue(value)}`,
          hint:
            typeof value === 'string'
              ? 'write it without quotes: true, false (YAML 1.1 also reads yes, no, on, off)'
              : undefined,
        });
      }
      return;
    case 'duration':
      return checkDuration(spec, value, path, push);
    case 'enum':
      return checkEnum(spec, value, path, push);
    case 'list':
      return checkList(spec, value, path, push);
    case 'message':
      return checkMessage(spec, value, path, push);
  }
}

function checkString(spec: Extract<Spec, { t: 'string' }>, value: unknown, path: YamlPath, push: Push): void {
  if (typeof value !== 'string') {
    const quoted = typeof value === 'number' || typeof value === 'boolean' ? `'${String(value)}'` : undefined;
    push({
      code: INVALID,
      path,
      at: 'value',
      message: `must be a string, not ${typeName(value)}${quoted ? ` (YAML reads ${String(value)} as ${typeName(value)})` : ''}`,
      hint: quoted && `quote it: ${quoted}`,
    });
    return;
  }
  if (spec.in && !spec.in.includes(value)) {
    const named = spec.in.filter((v) => v !== '');
    const near = didYouMean(value, named);
    push({
      code: INVALID,
      path,
      at: 'value',
      message: `${showValue(value)} is not one of ${named.join(', ')}`,
      hint: `${near ? `did you mean ${near}? ` : ''}allowed: ${named.join(', ')}${spec.in.includes('') ? ' (or leave it out, or "", for the default)' : ''}`,
    });
    return;
  }
  if (spec.minBytes && Buffer.byteLength(value) < spec.minBytes) {
    push({
      code: INVALID,
      path,
      at: 'value',
      message: 'must not be empty',
      hint: 'leave the key out instead, or give it a value',
    });
    return;
  }
  if (spec.max !== undefined && value.length > spec.max) {
    push({
      code: INVALID,
      path,
      at: 'value',
      message: `must be at most ${spec.max} characters (this one has ${value.length})`,
    });
    return;
  }
  const problem = spec.check?.(value);
  if (problem) push({ code: INVALID, path, at: 'value', message: problem });
}

function checkDuration(spec: Extract<Spec, { t: 'duration' }>, value: unknown, path: YamlPath, push: Push): void {
  const seconds = typeof value === 'string' ? parseGitLabDuration(value) : undefined;
  if (seconds === undefined) {
    const form = gitLabDurationFor(value);
    const outOfRange = typeof value === 'string' && /^-?[0-9]+(\.[0-9]{0,9})?s$/.test(value);
    push({
      code: INVALID,
      path,
      at: 'value',
      message: outOfRange
        ? `${showValue(value)} is out of range (at most ${MAX_DURATION_SECONDS}s)`
        : `${showValue(value)} is not a duration GitLab reads`,
      hint:
        form && !outOfRange
          ? `durations are seconds: write ${form}`
          : 'durations are seconds with an s: write 3600s, 90s or 1.5s',
    });
    return;
  }
  if (spec.positive && seconds <= 0) push({ code: INVALID, path, at: 'value', message: 'must be more than 0s' });
}

function checkEnum(spec: Extract<Spec, { t: 'enum' }>, value: unknown, path: YamlPath, push: Push): void {
  if (typeof value === 'string' && spec.values.includes(value)) return;
  // protojson also reads an enum's number; only the defined ones mean anything to the agent.
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < spec.values.length) return;
  const near = typeof value === 'string' ? didYouMean(value, spec.values) : undefined;
  push({
    code: INVALID,
    path,
    at: 'value',
    message: `${showValue(value)} is not one of ${spec.values.join(', ')}`,
    hint: `${near ? `did you mean ${near}? ` : ''}allowed: ${spec.values.join(', ')} (lowercase)`,
  });
}

function checkList(spec: Extract<Spec, { t: 'list' }>, value: unknown, path: YamlPath, push: Push): void {
  if (!Array.isArray(value)) {
    push({
      code: INVALID,
      path,
      at: 'value',
      message: `must be a list, not ${typeName(value)}`,
      hint: 'write each entry on its own line starting with "- "',
    });
    return;
  }
  if (spec.max !== undefined && value.length > spec.max) {
    push({
      code: INVALID,
      path,
      at: 'value',
      message: `lists ${value.length} entries; at most ${spec.max} are allowed`,
    });
    return;
  }
  if (spec.minItems && value.length < spec.minItems)
    push({
      code: INVALID,
      path,
      at: 'value',
      message: `must list at least ${spec.minItems} entr${spec.minItems === 1 ? 'y' : 'ies'}`,
    });
  value.forEach((item, i) => {
    if (item === null || item === undefined)
      push({
        code: INVALID,
        path: [...path, i],
        at: 'value',
        message: 'an empty list entry: GitLab does not accept null in a list',
        hint: 'remove the "-" line or give it a value',
      });
    else walk(spec.of, item, [...path, i], push);
  });
}

function checkMessage(spec: Extract<Spec, { t: 'message' }>, value: unknown, path: YamlPath, push: Push): void {
  if (!isMapping(value)) {
    push({
      code: INVALID,
      path,
      at: 'value',
      message: `must be a mapping of keys, not ${typeName(value)}`,
      hint: path.length === 0 ? 'the file is a mapping of sections: gitops:, observability:, ...' : undefined,
    });
    return;
  }
  const known = Object.keys(spec.fields);
  for (const [key, item] of Object.entries(value)) {
    const field = spec.fields[key];
    if (field) {
      walk(field, item, [...path, key], push);
      continue;
    }
    const removed = spec.removed?.[key];
    if (removed) {
      push({
        code: key === 'charts' ? ProblemCode.CONFIG_CHARTS_UNSUPPORTED : ProblemCode.CONFIG_UNKNOWN_KEY,
        path: [...path, key],
        at: 'key',
        message: removed,
      });
      continue;
    }
    const near = didYouMean(key, known);
    const where = path.length ? `${pathText(path)} ` : 'the top level ';
    const hint = near
      ? `did you mean ${near}?`
      : `${where}has ${known.length ? known.join(', ') : 'no keys (write {})'}`;
    push({
      code: ProblemCode.CONFIG_UNKNOWN_KEY,
      path: [...path, key],
      at: 'key',
      message: `unknown key: GitLab's agent configuration defines no ${JSON.stringify(key)} here`,
      hint: topLevelHint(path, key) ?? hint,
    });
  }
  // proto3: a plain string left out is "", a list left out is empty, so their rules apply too.
  const inOneof = new Set((spec.oneofs ?? []).flatMap((o) => o.members));
  for (const [key, field] of Object.entries(spec.fields)) {
    if (value[key] !== null && value[key] !== undefined) continue;
    const missingString = field.t === 'string' && field.minBytes && !field.optional && !inOneof.has(key);
    const missingList = field.t === 'list' && field.minItems;
    if (missingString || missingList)
      push({
        code: INVALID,
        path,
        at: 'value',
        message: `${key} is required`,
        hint: `add ${key}: ${missingList ? '[…]' : '…'}`,
      });
  }
  for (const oneof of spec.oneofs ?? []) {
    const set = oneof.members.filter((m) => value[m] !== null && value[m] !== undefined);
    if (set.length > 1)
      push({
        code: INVALID,
        path: [...path, set[1]],
        at: 'key',
        message: `set only one of ${oneof.members.join(', ')} (${set.join(' and ')} are both set)`,
      });
    else if (set.length === 0 && oneof.required)
      push({
        code: INVALID,
        path,
        at: 'value',
        message: `set exactly one of ${oneof.members.join(', ')}`,
        hint: path[path.length - 1] === 'ref' ? 'or leave ref out for the default branch' : undefined,
      });
  }
}

function topLevelHint(path: YamlPath, key: string): string | undefined {
  if (path.length === 0 && key === 'manifest_projects') return 'it belongs under gitops:';
  if (key === 'resource_inclusions' || key === 'resource_exclusions') return 'GitLab removed it in 14.0';
  return undefined;
}

/** `gitops.manifest_projects[0].ref`. */
export function pathText(path: YamlPath): string {
  return path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : `.${k}`)).join('');
}
