/**
 * Values the API server rewrites on the way in, so that they never show up as drift: resource
 * quantities (`0.5` is stored as `500m`, `1024Mi` as `1Gi`), Secret `stringData` (stored as base64
 * `data`), base64 spelled differently. Everything here is pure and allocation-light: plan.ts calls
 * it only after a strict `===` comparison has already failed.
 *
 * Deliberately NOT normalised: an int against a numeric string outside quantity fields
 * (`targetPort: "80"` vs `80` are different int-or-string values to the API server).
 */
import { unescapePointerSegment } from '../kube/json-pointer.js';

/** An exact rational value `n / d` (d > 0). */
export interface Rational {
  n: bigint;
  d: bigint;
}

// Kubernetes quantity grammar: <sign><digits>[.<digits>]<suffix>, suffix binary SI, decimal SI or
// a decimal exponent. The exponent alternative comes first so `1E3` is 1000, not "1 exa" plus junk.
const QUANTITY_RE = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$/;
const BINARY_POWER: Record<string, number> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };
const DECIMAL_POWER: Record<string, number> = { n: -9, u: -6, m: -3, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
/** Exponents beyond this are not real quantities; refusing them keeps bigint sizes bounded. */
const MAX_EXPONENT = 400;

function pow10(e: number): bigint {
  return 10n ** BigInt(e);
}

/**
 * Parses a Kubernetes resource quantity (`500m`, `1Gi`, `1e3`, `0.5`, or a plain number) to its
 * exact value. Returns undefined for anything that is not a quantity.
 */
export function parseQuantity(value: string | number): Rational | undefined {
  const text = typeof value === 'number' ? (Number.isFinite(value) ? String(value) : '') : value.trim();
  const m = QUANTITY_RE.exec(text);
  if (!m) return undefined;
  const [, sign, num, suffix] = m;
  const dot = num.indexOf('.');
  const digits = dot < 0 ? num : num.slice(0, dot) + num.slice(dot + 1);
  let exp10 = dot < 0 ? 0 : -(num.length - dot - 1);
  let exp2 = 0;
  if (suffix) {
    if (suffix in BINARY_POWER) exp2 = BINARY_POWER[suffix];
    else if (suffix in DECIMAL_POWER) exp10 += DECIMAL_POWER[suffix];
    else exp10 += Number(suffix.slice(1));
  }
  if (Math.abs(exp10) > MAX_EXPONENT) return undefined;
  let n = BigInt(digits || '0');
  if (sign === '-') n = -n;
  let d = 1n;
  if (exp10 >= 0) n *= pow10(exp10);
  else d = pow10(-exp10);
  if (exp2) n <<= BigInt(exp2);
  return { n, d };
}

/** True when both are quantities with the same value (`"0.5"` == `"500m"`, `1` == `"1000m"`). */
export function quantityEqual(a: unknown, b: unknown): boolean {
  if ((typeof a !== 'string' && typeof a !== 'number') || (typeof b !== 'string' && typeof b !== 'number'))
    return false;
  const x = parseQuantity(a);
  if (!x) return false;
  const y = parseQuantity(b);
  if (!y) return false;
  return x.n * y.d === y.n * x.d;
}

/**
 * Map names whose values are quantities (resources.limits/requests, ResourceQuota hard, PV capacity, LimitRange,
 * overhead).
 */
const QUANTITY_PARENTS = new Set([
  'limits',
  'requests',
  'hard',
  'capacity',
  'allocatable',
  'overhead',
  'max',
  'min',
  'default',
  'defaultRequest',
  'maxLimitRequestRatio',
]);
/** Single fields that are quantities. */
const QUANTITY_FIELDS = new Set(['sizeLimit']);

/** True when a scalar at `.../parentKey/key` is a resource quantity. */
export function isQuantityContext(parentKey: string | undefined, key: string | undefined): boolean {
  return (
    (parentKey !== undefined && QUANTITY_PARENTS.has(parentKey)) || (key !== undefined && QUANTITY_FIELDS.has(key))
  );
}

/** Canonical bytes of a base64 string, ignoring whitespace and padding differences. */
function base64Bytes(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'base64');
}

/** True when two base64 strings encode the same bytes (the API server re-encodes Secret data). */
export function base64Equal(a: unknown, b: unknown): boolean {
  return typeof a === 'string' && typeof b === 'string' && base64Bytes(a).equals(base64Bytes(b));
}

/** Secret `stringData` as the `data` the API server will store (UTF-8, base64). */
export function stringDataToData(stringData: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k in stringData) {
    const v = stringData[k];
    if (v === null || v === undefined) continue;
    out[k] = Buffer.from(String(v), 'utf8').toString('base64');
  }
  return out;
}

/** Context a leaf comparison needs beyond the two values. */
export interface LeafContext {
  parentKey?: string;
  key?: string;
  /** The value sits under a Secret's `data`: compare decoded bytes. */
  secretData?: boolean;
}

/**
 * Equality of two scalars as the API server sees them. Strictly equal values are equal; otherwise
 * only quantities (by value) and Secret data (by decoded bytes) get a second chance.
 */
export function leafEqual(desired: unknown, live: unknown, ctx: LeafContext): boolean {
  if (desired === live) return true;
  if (ctx.secretData) return base64Equal(desired, live);
  if (isQuantityContext(ctx.parentKey, ctx.key)) return quantityEqual(desired, live);
  return false;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An empty object or array in Git equals an absent live field: the API server drops empty omitempty fields. */
export function isEmptyContainer(v: unknown): boolean {
  if (Array.isArray(v)) return v.length === 0;
  if (isPlainObject(v)) {
    for (const _ in v) return false;
    return true;
  }
  return false;
}

/**
 * Deep "live holds what desired says": objects compare on desired's keys only (other live keys are
 * server defaults), `null` in desired means "not specified", arrays compare element-wise with equal
 * length, scalars with `leafEqual`.
 */
export function subsetEqual(
  desired: unknown,
  live: unknown,
  parentKey: string | undefined,
  key: string | undefined,
  secretData = false,
): boolean {
  if (desired === live) return true;
  if (desired === null || desired === undefined) return true;
  if (Array.isArray(desired)) {
    if (!Array.isArray(live)) return live === undefined && desired.length === 0;
    if (desired.length !== live.length) return false;
    for (let i = 0; i < desired.length; i++) {
      if (!subsetEqual(desired[i], live[i], parentKey, key)) return false;
    }
    return true;
  }
  if (isPlainObject(desired)) {
    if (!isPlainObject(live)) return live === undefined && isEmptyContainer(desired);
    for (const k in desired) {
      if (!subsetEqual(desired[k], live[k], key, k, secretData)) return false;
    }
    return true;
  }
  return leafEqual(desired, live, { parentKey, key, secretData });
}

/**
 * True when the live value at `path` (a JSON pointer or its segments) holds the desired value as
 * the API server would store it. The last two path segments give the context (quantities); a path
 * starting `/data` is not enough to know the object is a Secret, so use plan.ts for whole objects.
 */
export function semanticEqual(
  desiredValue: unknown,
  liveValue: unknown,
  path: string | readonly string[] = [],
): boolean {
  const segs =
    typeof path === 'string' ? (path === '' ? [] : path.slice(1).split('/').map(unescapePointerSegment)) : path;
  const key = segs.length > 0 ? segs[segs.length - 1] : undefined;
  const parentKey = segs.length > 1 ? segs[segs.length - 2] : undefined;
  return subsetEqual(desiredValue, liveValue, parentKey, key);
}
