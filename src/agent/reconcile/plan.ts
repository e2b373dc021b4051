/**
 * The plan stage: per object, the RFC 6902 JSON patch that takes the live object to what Git says,
 * touching only fields Git specifies, plus removal of fields Git specified at the last apply (the
 * `gitops.dev/applied-fields` annotation) and no longer does. Server defaults, server-owned
 * metadata, `status`, normalised values and list entries others added never show up as drift.
 *
 * This runs for every object on every re-sync and on every watch event, so the unchanged case is
 * the hot path: one walk over the desired object with no allocation unless something differs.
 * Desired objects are treated as immutable: derived data (field set, encoding, hash) is cached per
 * object identity.
 */
import { createHash } from 'node:crypto';
import type { JsonPatchOp, KubeObject } from '../kube/types.js';
import { APPLIED_FIELDS_ANNOTATION } from './labels.js';
import { isEmptyContainer, isPlainObject, leafEqual, stringDataToData, subsetEqual } from './normalize.js';
import { escapePointerSegment, unescapePointerSegment } from '../kube/json-pointer.js';
import type { ListKeys } from '../kube/schema.js';
import {
  type FieldTree,
  type KeyTrie,
  SERVER_OWNED_METADATA,
  SKIPPED_ROOT_FIELDS,
  childTrie,
  decodeFieldTree,
  encodeFieldTree,
  fieldTreeOf,
  keyTrie,
  keyedEntries,
  selectorOf,
} from './fieldset.js';

export interface PlanInput {
  desired: KubeObject;
  live?: KubeObject;
  listKeys: ListKeys;
  /** JSON pointers (`*` matches any list index or map key) never reconciled on an existing object. */
  ignore?: readonly string[];
  /** Cached server-normalised projection for this exact desired input (see projectFields). */
  normalized?: unknown;
}

export interface Plan {
  action: 'create' | 'patch' | 'none';
  /** Ops to send for 'patch' (starting with a `test` of resourceVersion); empty otherwise. */
  patch: JsonPatchOp[];
  /** The field-set encoding for the `gitops.dev/applied-fields` annotation. */
  appliedFields: string;
  reason?: string;
  /** For 'create': the object to POST (desired with the applied-fields annotation set). */
  body?: KubeObject;
}

// ---------- per-desired caches ----------

interface Prepared {
  listKeys: ListKeys;
  /** Desired as the API server will store it (Secret stringData turned into data). */
  effective: KubeObject;
  encoding: string;
}

const prepared = new WeakMap<KubeObject, Prepared>();

/** A Secret's stringData merged into data (stringData wins, as in the API server). */
export function effectiveDesired(desired: KubeObject): KubeObject {
  if (desired.kind !== 'Secret' || desired.apiVersion !== 'v1' || !isPlainObject(desired.stringData)) return desired;
  const { stringData, ...rest } = desired;
  const data = isPlainObject(desired.data) ? desired.data : {};
  return { ...rest, data: { ...data, ...stringDataToData(stringData as Record<string, unknown>) } } as KubeObject;
}

function prepare(desired: KubeObject, listKeys: ListKeys): Prepared {
  const hit = prepared.get(desired);
  if (hit && hit.listKeys === listKeys) return hit;
  const effective = effectiveDesired(desired);
  const p: Prepared = { listKeys, effective, encoding: encodeFieldTree(fieldTreeOf(effective, listKeys)) };
  prepared.set(desired, p);
  return p;
}

/** The applied-fields encoding for a desired object (what plan stores in the annotation). */
export function appliedFieldsOf(desired: KubeObject, listKeys: ListKeys): string {
  return prepare(desired, listKeys).encoding;
}

const hashes = new WeakMap<KubeObject, string>();

/** Canonical JSON (sorted keys, undefined dropped) appended to `out` piece by piece: one join, no per-level strings. */
function canonicalJson(v: unknown, out: string[]): void {
  if (Array.isArray(v)) {
    out.push('[');
    for (let i = 0; i < v.length; i++) {
      if (i) out.push(',');
      canonicalJson(v[i] === undefined ? null : v[i], out);
    }
    out.push(']');
    return;
  }
  if (isPlainObject(v)) {
    out.push('{');
    let first = true;
    for (const k of Object.keys(v).sort()) {
      const x = v[k];
      if (x === undefined) continue;
      if (!first) out.push(',');
      first = false;
      out.push(JSON.stringify(k), ':');
      canonicalJson(x, out);
    }
    out.push('}');
    return;
  }
  out.push(JSON.stringify(v) ?? 'null');
}

/** Stable sha256 (hex) of the canonical JSON of a desired object: the key for the normalised-form cache. */
export function desiredHash(desired: KubeObject): string {
  let h = hashes.get(desired);
  if (!h) {
    const parts: string[] = [];
    canonicalJson(desired, parts);
    h = createHash('sha256').update(parts.join('')).digest('hex');
    hashes.set(desired, h);
  }
  return h;
}

// ---------- ignore pointers ----------

interface IgnoreTrie {
  children: Map<string, IgnoreTrie> | null;
  star: IgnoreTrie | null;
  terminal: boolean;
}

const ignoreCache = new Map<string, IgnoreTrie>();

function compileIgnore(ignore: readonly string[] | undefined): IgnoreTrie | null {
  if (!ignore || ignore.length === 0) return null;
  const cacheKey = ignore.join('\n');
  const hit = ignoreCache.get(cacheKey);
  if (hit) return hit;
  const root: IgnoreTrie = { children: null, star: null, terminal: false };
  for (const pointer of ignore) {
    if (!pointer.startsWith('/')) continue;
    let node = root;
    for (const raw of pointer.slice(1).split('/')) {
      if (raw === '*') node = node.star ??= { children: null, star: null, terminal: false };
      else {
        const seg = unescapePointerSegment(raw);
        node.children ??= new Map();
        let next = node.children.get(seg);
        if (!next) node.children.set(seg, (next = { children: null, star: null, terminal: false }));
        node = next;
      }
    }
    node.terminal = true;
  }
  if (ignoreCache.size > 256) ignoreCache.clear();
  ignoreCache.set(cacheKey, root);
  return root;
}

function childIgnore(t: IgnoreTrie | null, k: string): IgnoreTrie | null {
  if (!t) return null;
  return t.children?.get(k) ?? t.star;
}

// ---------- the walk ----------

/** Removes `null`s (meaning "not specified") from a value about to be written whole. */
function clean(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(clean);
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const k in v) if (v[k] !== null && v[k] !== undefined) out[k] = clean(v[k]);
    return out;
  }
  return v;
}

class Walker {
  ops: JsonPatchOp[] | null = null;
  readonly path: string[] = [];
  constructor(readonly secret: boolean) {}

  pointer(extra?: string): string {
    let p = '';
    for (const s of this.path) p += `/${escapePointerSegment(s)}`;
    return extra === undefined ? p : `${p}/${extra}`;
  }

  emit(op: JsonPatchOp): void {
    (this.ops ??= []).push(op);
  }

  set(value: unknown, exists: boolean): void {
    this.emit({ op: exists ? 'replace' : 'add', path: this.pointer(), value: clean(value) });
  }

  /**
   * Diffs the desired object `d` against live `l` (both plain objects) on d's keys, then removes
   * fields recorded in `old` that d no longer has. `skip` holds keys not to walk (key fields of a
   * list entry are matched already; our own annotation is planned separately).
   */
  object(
    d: Record<string, unknown>,
    l: Record<string, unknown>,
    kt: KeyTrie | null,
    ig: IgnoreTrie | null,
    old: FieldTree | null,
    level: number,
    skip: string | null,
  ): void {
    for (const k in d) {
      const dv = d[k];
      if (dv === null || dv === undefined || k === skip) continue;
      if (level === 0 && SKIPPED_ROOT_FIELDS.has(k)) continue;
      if (level === 1 && SERVER_OWNED_METADATA.has(k)) continue;
      const ik = childIgnore(ig, k);
      if (ik?.terminal) continue;
      this.path.push(k);
      const nl = this.secret && level === 0 && k === 'data' ? SECRET_DATA_LEVEL : nextLevel(level, k);
      this.value(dv, l[k], childTrie(kt, k), ik, old?.fields?.get(k) ?? null, k, nl, level === SECRET_DATA_LEVEL);
      this.path.pop();
    }
    if (old?.fields) {
      for (const [k, oldChild] of old.fields) {
        if ((d[k] !== null && d[k] !== undefined) || l[k] === undefined || k === skip) continue;
        if (level === 0 && SKIPPED_ROOT_FIELDS.has(k)) continue;
        if (level === 1 && SERVER_OWNED_METADATA.has(k)) continue;
        const ik = childIgnore(ig, k);
        if (ik?.terminal) continue;
        this.path.push(k);
        this.removeRecorded(oldChild, l[k], childTrie(kt, k), ik);
        this.path.pop();
      }
    }
  }

  value(
    dv: unknown,
    lv: unknown,
    kt: KeyTrie | null,
    ig: IgnoreTrie | null,
    old: FieldTree | null,
    key: string,
    level: number,
    secretData: boolean,
  ): void {
    if (Array.isArray(dv)) {
      const keys = kt?.keys;
      if (keys && Array.isArray(lv) && keyedEntries(dv, keys))
        this.keyedList(dv as Array<Record<string, unknown>>, lv, kt as KeyTrie, ig, old);
      else if (!subsetEqual(dv, lv, this.path[this.path.length - 2], key)) this.set(dv, lv !== undefined);
      return;
    }
    if (isPlainObject(dv)) {
      if (isPlainObject(lv)) this.object(dv, lv, kt, ig, old, level, level === 3 ? APPLIED_FIELDS_ANNOTATION : null);
      else if (!(lv === undefined && isEmptyContainer(dv))) this.set(dv, lv !== undefined);
      return;
    }
    if (dv === lv) return;
    if (!leafEqual(dv, lv, { parentKey: this.path[this.path.length - 2], key, secretData }))
      this.set(dv, lv !== undefined);
  }

  keyedList(
    dv: Array<Record<string, unknown>>,
    lv: unknown[],
    kt: KeyTrie,
    ig: IgnoreTrie | null,
    old: FieldTree | null,
  ): void {
    const keys = kt.keys as readonly string[];
    const item = kt.star;
    const used = new Uint8Array(lv.length);
    const matched = new Int32Array(dv.length);
    for (let i = 0; i < dv.length; i++) {
      const de = dv[i];
      let j = -1;
      for (let c = 0; c < lv.length; c++) {
        if (!used[c] && entryMatches(de, lv[c], keys)) {
          j = c;
          break;
        }
      }
      matched[i] = j;
      if (j < 0) continue;
      used[j] = 1;
      const seg = String(j);
      const ik = childIgnore(ig, seg);
      if (ik?.terminal) continue;
      this.path.push(seg);
      const oldEntry = old?.entries?.get(selectorOf(de, keys))?.tree ?? null;
      this.object(de, lv[j] as Record<string, unknown>, item, ik, oldEntry, 99, null);
      this.path.pop();
    }
    // Entries Git specified last time and no longer does: remove them, highest live index first so
    // the indexes of the others stay valid while the patch applies.
    if (old?.entries) {
      let wanted: Set<string> | null = null;
      let gone: number[] | null = null;
      for (const [sel, entry] of old.entries) {
        wanted ??= new Set(dv.map((e) => selectorOf(e, keys)));
        if (wanted.has(sel)) continue;
        for (let c = 0; c < lv.length; c++) {
          if (!used[c] && recordedMatches(entry.keys, lv[c])) {
            used[c] = 1;
            (gone ??= []).push(c);
          }
        }
      }
      if (gone) {
        gone.sort((a, b) => b - a);
        for (const c of gone)
          if (!childIgnore(ig, String(c))?.terminal) this.emit({ op: 'remove', path: this.pointer(String(c)) });
      }
    }
    for (let i = 0; i < dv.length; i++) {
      if (matched[i] < 0 && !ig?.star?.terminal) this.emit({ op: 'add', path: this.pointer('-'), value: clean(dv[i]) });
    }
  }

  /** Removes what `old` recorded under the current path, leaving what others added. */
  removeRecorded(old: FieldTree, lv: unknown, kt: KeyTrie | null, ig: IgnoreTrie | null): void {
    if (old.fields && isPlainObject(lv)) {
      for (const [k, child] of old.fields) {
        if (lv[k] === undefined) continue;
        const ik = childIgnore(ig, k);
        if (ik?.terminal) continue;
        this.path.push(k);
        this.removeRecorded(child, lv[k], childTrie(kt, k), ik);
        this.path.pop();
      }
      return;
    }
    if (old.entries && Array.isArray(lv)) {
      const gone: number[] = [];
      for (const [, entry] of old.entries) {
        for (let c = 0; c < lv.length; c++) if (recordedMatches(entry.keys, lv[c]) && !gone.includes(c)) gone.push(c);
      }
      gone.sort((a, b) => b - a);
      for (const c of gone)
        if (!childIgnore(ig, String(c))?.terminal) this.emit({ op: 'remove', path: this.pointer(String(c)) });
      return;
    }
    if (!old.fields && !old.entries) this.emit({ op: 'remove', path: this.pointer() });
  }
}

/** Walk levels: 0 root, 1 metadata, 3 metadata.annotations, 4 a Secret's data, 99 anything else. */
const SECRET_DATA_LEVEL = 4;
function nextLevel(level: number, k: string): number {
  if (level === 0 && k === 'metadata') return 1;
  if (level === 1 && k === 'annotations') return 3;
  return 99;
}

function sameKey(a: unknown, b: unknown): boolean {
  return a === b || (b !== undefined && b !== null && String(a) === String(b));
}

/**
 * A desired entry matches a live one when every key field it spells out is equal (missing ones are server defaults).
 */
function entryMatches(de: Record<string, unknown>, le: unknown, keys: readonly string[]): boolean {
  if (!isPlainObject(le)) return false;
  for (const k of keys) {
    const v = de[k];
    if (v === undefined || v === null) continue;
    if (!sameKey(v, le[k])) return false;
  }
  return true;
}

function recordedMatches(keys: ReadonlyArray<[string, string]>, le: unknown): boolean {
  if (!isPlainObject(le)) return false;
  for (const [k, v] of keys) {
    const lv = le[k];
    if (lv === undefined || lv === null || String(lv) !== v) return false;
  }
  return true;
}

// ---------- projection ----------

function projectObject(
  o: Record<string, unknown>,
  d: Record<string, unknown>,
  kt: KeyTrie | null,
  level: number,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k in d) {
    const dv = d[k];
    if (dv === null || dv === undefined) continue;
    if (level === 0 && SKIPPED_ROOT_FIELDS.has(k)) continue;
    if (level === 1 && SERVER_OWNED_METADATA.has(k)) continue;
    if (level === 3 && k === APPLIED_FIELDS_ANNOTATION) continue;
    const ov = o[k];
    if (ov === undefined) continue;
    out[k] = projectValue(ov, dv, childTrie(kt, k), nextLevel(level, k));
  }
  return out;
}

function projectValue(ov: unknown, dv: unknown, kt: KeyTrie | null, level: number): unknown {
  if (Array.isArray(dv)) {
    const keys = kt?.keys;
    if (!keys || !Array.isArray(ov) || !keyedEntries(dv, keys)) return ov;
    const used = new Uint8Array(ov.length);
    const out: unknown[] = [];
    for (const de of dv as Array<Record<string, unknown>>) {
      for (let c = 0; c < ov.length; c++) {
        if (!used[c] && entryMatches(de, ov[c], keys)) {
          used[c] = 1;
          out.push(projectObject(ov[c] as Record<string, unknown>, de, kt?.star ?? null, 99));
          break;
        }
      }
    }
    return out;
  }
  if (isPlainObject(dv) && isPlainObject(ov)) return projectObject(ov, dv, kt, level);
  return ov;
}

/**
 * The part of `obj` that lies within desired's field set: desired's keys, keyed-list entries
 * matched by key (in desired's order), atomic lists and scalars whole. The engine stores
 * `projectFields(serverResponse, desired, listKeys)` per `desiredHash(desired)` and passes it back
 * as `normalized`, which catches normalisations normalize.ts does not know about.
 */
export function projectFields(obj: KubeObject, desired: KubeObject, listKeys: ListKeys): Record<string, unknown> {
  return projectObject(obj, prepare(desired, listKeys).effective, keyTrie(listKeys), 0);
}

function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    let n = 0;
    for (const k in a) {
      if (!jsonEqual(a[k], b[k])) return false;
      n++;
    }
    for (const _ in b) n--;
    return n === 0;
  }
  return false;
}

// ---------- the plan ----------

function withAppliedFields(desired: KubeObject, encoding: string): KubeObject {
  return {
    ...desired,
    metadata: {
      ...desired.metadata,
      annotations: { ...desired.metadata.annotations, [APPLIED_FIELDS_ANNOTATION]: encoding },
    },
  };
}

const APPLIED_POINTER = `/metadata/annotations/${escapePointerSegment(APPLIED_FIELDS_ANNOTATION)}`;

/**
 * Plans one object: 'create' when there is no live object, 'none' when live already holds what Git
 * says (the hot path: no patch, no write), else 'patch' with ops that apply in order to live.
 */
export function planObject(input: PlanInput): Plan {
  const { desired, live, listKeys } = input;
  const p = prepare(desired, listKeys);
  if (!live)
    return {
      action: 'create',
      patch: [],
      appliedFields: p.encoding,
      reason: 'not found in the cluster',
      body: withAppliedFields(desired, p.encoding),
    };

  const liveAnnotations = live.metadata?.annotations;
  const recorded = liveAnnotations?.[APPLIED_FIELDS_ANNOTATION];
  // Same field set as last time means nothing can have been dropped from Git: skip removal work.
  const old = recorded === p.encoding || typeof recorded !== 'string' ? null : decodeFieldTree(recorded);
  const w = new Walker(desired.kind === 'Secret' && desired.apiVersion === 'v1');
  w.object(p.effective, live, keyTrie(listKeys), compileIgnore(input.ignore), old, 0, null);

  if (!w.ops && recorded === p.encoding) return { action: 'none', patch: [], appliedFields: p.encoding };
  if (
    input.normalized !== undefined &&
    recorded === p.encoding &&
    jsonEqual(projectFields(live, desired, listKeys), input.normalized)
  ) {
    return {
      action: 'none',
      patch: [],
      appliedFields: p.encoding,
      reason: 'matches the cached server-normalised form',
    };
  }

  const ops = w.ops ?? [];
  const reason = ops.length
    ? `differs at ${ops
        .slice(0, 3)
        .map((o) => o.path)
        .join(', ')}${ops.length > 3 ? ` and ${ops.length - 3} more` : ''}`
    : 'recording the applied field set';
  if (recorded !== p.encoding) {
    if (isPlainObject(liveAnnotations) || ops.some((o) => o.path === '/metadata/annotations' && o.op !== 'remove'))
      ops.push({ op: 'add', path: APPLIED_POINTER, value: p.encoding });
    else ops.push({ op: 'add', path: '/metadata/annotations', value: { [APPLIED_FIELDS_ANNOTATION]: p.encoding } });
  }
  const rv = live.metadata?.resourceVersion;
  const patch: JsonPatchOp[] =
    rv === undefined ? ops : [{ op: 'test', path: '/metadata/resourceVersion', value: rv }, ...ops];
  return { action: 'patch', patch, appliedFields: p.encoding, reason };
}
