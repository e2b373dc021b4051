/**
 * The field set of a desired object: which fields (and which entries of keyed lists) Git
 * specifies. Stored on each object in the `gitops.dev/applied-fields` annotation so the next plan
 * knows what Git specified last time and can remove what it no longer does.
 *
 * Encoding (compact and deterministic: names and entries sorted, so re-ordering YAML changes
 * nothing): a comma-separated list of items, each `name`, `name(children)`, or for an entry of a
 * keyed list `name[key=value,...]` optionally followed by `(children)`. Key fields of an entry are
 * implied by its selector and not repeated. `\` escapes any of `\(),[]=` inside names and values.
 * Example: `metadata(labels(app)),spec(replicas,template(spec(containers[name=nginx](image))))`.
 */
import type { KubeObject } from '../kube/types.js';
import { APPLIED_FIELDS_ANNOTATION } from './labels.js';
import { isPlainObject } from './normalize.js';
import { unescapePointerSegment } from '../kube/json-pointer.js';
import type { ListKeys } from '../kube/schema.js';

/** One keyed-list entry recorded in a field set. */
export interface FieldEntry {
  /** Key field → value as a string, only the key fields the entry spelled out. */
  keys: Array<[string, string]>;
  tree: FieldTree;
}

/** A node of a field set: a leaf, an object with fields, or a keyed list with entries. */
export interface FieldTree {
  fields: Map<string, FieldTree> | null;
  /** Selector (`name=nginx`) → entry. */
  entries: Map<string, FieldEntry> | null;
}

/** Compiled ListKeys: a trie walked alongside the object, so no path strings are built. */
export interface KeyTrie {
  children: Map<string, KeyTrie> | null;
  star: KeyTrie | null;
  keys: readonly string[] | null;
}

const trieCache = new WeakMap<ListKeys, KeyTrie>();
const EMPTY_TRIE: KeyTrie = { children: null, star: null, keys: null };

/** Compiles (once per ListKeys object) the path patterns into a trie. */
export function keyTrie(listKeys: ListKeys): KeyTrie {
  let t = trieCache.get(listKeys);
  if (t) return t;
  t = { children: null, star: null, keys: null };
  for (const [pattern, keys] of listKeys) {
    let node = t;
    for (const raw of pattern.split('/').slice(1)) {
      if (raw === '*') {
        node.star ??= { children: null, star: null, keys: null };
        node = node.star;
      } else {
        const seg = unescapePointerSegment(raw);
        node.children ??= new Map();
        let next = node.children.get(seg);
        if (!next) node.children.set(seg, (next = { children: null, star: null, keys: null }));
        node = next;
      }
    }
    node.keys = keys;
  }
  trieCache.set(listKeys, t);
  return t;
}

/** The trie node for field `k` under `t` (exact name first, then `*`). */
export function childTrie(t: KeyTrie | null, k: string): KeyTrie | null {
  if (!t) return null;
  return t.children?.get(k) ?? t.star;
}

export { EMPTY_TRIE };

/** Metadata fields the API server owns or that identify the object: never part of the plan. */
export const SERVER_OWNED_METADATA: ReadonlySet<string> = new Set([
  'name',
  'namespace',
  'generateName',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'managedFields',
  'selfLink',
]);

/** Top-level fields that are identity or server-owned. */
export const SKIPPED_ROOT_FIELDS: ReadonlySet<string> = new Set(['apiVersion', 'kind', 'status']);

/** True when every entry is an object naming at least one key field: only then can entries be matched by key. */
export function keyedEntries(list: readonly unknown[], keys: readonly string[]): boolean {
  for (const e of list) {
    if (!isPlainObject(e)) return false;
    let has = false;
    for (const k of keys) {
      const v = e[k];
      if (v !== undefined && v !== null) {
        has = true;
        break;
      }
    }
    if (!has) return false;
  }
  return true;
}

const SPECIAL = /[\\(),[\]=]/g;
function esc(s: string): string {
  return s.replace(SPECIAL, (c) => `\\${c}`);
}

/** The selector of an entry (`containerPort=80,protocol=TCP`), from the key fields it spells out. */
export function selectorOf(entry: Record<string, unknown>, keys: readonly string[]): string {
  let s = '';
  for (const k of keys) {
    const v = entry[k];
    if (v === undefined || v === null) continue;
    if (s) s += ',';
    s += `${esc(k)}=${esc(String(v))}`;
  }
  return s;
}

function leaf(): FieldTree {
  return { fields: null, entries: null };
}

function treeOfObject(
  obj: Record<string, unknown>,
  trie: KeyTrie | null,
  skip: readonly string[] | null,
  level: 'root' | 'metadata' | 'annotations' | 'other',
): FieldTree {
  const fields = new Map<string, FieldTree>();
  for (const k in obj) {
    const v = obj[k];
    if (v === null || v === undefined) continue;
    if (skip && skip.includes(k)) continue;
    if (level === 'root' && SKIPPED_ROOT_FIELDS.has(k)) continue;
    if (level === 'metadata' && SERVER_OWNED_METADATA.has(k)) continue;
    if (level === 'annotations' && k === APPLIED_FIELDS_ANNOTATION) continue;
    const t = childTrie(trie, k);
    const nextLevel =
      level === 'root' && k === 'metadata'
        ? 'metadata'
        : level === 'metadata' && k === 'annotations'
          ? 'annotations'
          : 'other';
    const child = treeOfValue(v, t, nextLevel);
    // metadata with only identity fields says nothing about the field set.
    if (nextLevel === 'metadata' && !child.fields) continue;
    fields.set(k, child);
  }
  return { fields: fields.size ? fields : null, entries: null };
}

function treeOfValue(v: unknown, trie: KeyTrie | null, level: 'metadata' | 'annotations' | 'other'): FieldTree {
  if (Array.isArray(v)) {
    const keys = trie?.keys;
    if (!keys || !keyedEntries(v, keys)) return leaf();
    // An empty keyed list claims no entries: nothing to record, so nothing is removed later.
    const entries = new Map<string, FieldEntry>();
    for (const e of v as Array<Record<string, unknown>>) {
      const pairs: Array<[string, string]> = [];
      for (const k of keys) if (e[k] !== undefined && e[k] !== null) pairs.push([k, String(e[k])]);
      const sub = treeOfObject(e, trie?.star ?? null, keys, 'other');
      entries.set(selectorOf(e, keys), { keys: pairs, tree: sub });
    }
    return { fields: null, entries };
  }
  if (isPlainObject(v)) return treeOfObject(v, trie, null, level);
  return leaf();
}

/** The field set of a desired object (Secrets already turned from stringData into data). */
export function fieldTreeOf(desired: KubeObject, listKeys: ListKeys): FieldTree {
  return treeOfObject(desired, keyTrie(listKeys), null, 'root');
}

/** Encodes a field set deterministically (see the module comment). */
export function encodeFieldTree(tree: FieldTree): string {
  const parts: string[] = [];
  if (tree.fields) {
    const names = [...tree.fields.keys()].sort();
    for (const name of names) {
      const child = tree.fields.get(name) as FieldTree;
      if (child.entries) {
        const sels = [...child.entries.keys()].sort();
        for (const sel of sels) {
          const e = child.entries.get(sel) as FieldEntry;
          const inner = encodeFieldTree(e.tree);
          parts.push(`${esc(name)}[${sel}]${inner ? `(${inner})` : ''}`);
        }
      } else {
        const inner = encodeFieldTree(child);
        parts.push(inner ? `${esc(name)}(${inner})` : esc(name));
      }
    }
  }
  return parts.join(',');
}

class Cursor {
  i = 0;
  constructor(readonly s: string) {}
  peek(): string {
    return this.s[this.i];
  }
  /** Reads an escaped token up to an unescaped special character. */
  token(): string {
    let out = '';
    while (this.i < this.s.length) {
      const c = this.s[this.i];
      if (c === '\\') {
        if (this.i + 1 >= this.s.length) throw new Error('dangling escape');
        out += this.s[this.i + 1];
        this.i += 2;
      } else if ('(),[]='.includes(c)) break;
      else {
        out += c;
        this.i++;
      }
    }
    return out;
  }
  expect(c: string): void {
    if (this.s[this.i] !== c) throw new Error(`expected ${c} at ${this.i}`);
    this.i++;
  }
}

function parseItems(cur: Cursor, into: FieldTree): void {
  if (cur.i >= cur.s.length || cur.peek() === ')') return;
  for (;;) {
    const name = cur.token();
    if (!name) throw new Error(`empty name at ${cur.i}`);
    let entry: FieldEntry | null = null;
    let selector = '';
    if (cur.peek() === '[') {
      cur.i++;
      const pairs: Array<[string, string]> = [];
      const start = cur.i;
      for (;;) {
        const k = cur.token();
        cur.expect('=');
        const v = cur.token();
        pairs.push([k, v]);
        if (cur.peek() === ',') cur.i++;
        else break;
      }
      selector = cur.s.slice(start, cur.i);
      cur.expect(']');
      entry = { keys: pairs, tree: leaf() };
    }
    const node: FieldTree = entry ? entry.tree : leaf();
    if (cur.peek() === '(') {
      cur.i++;
      parseItems(cur, node);
      cur.expect(')');
    }
    into.fields ??= new Map();
    if (entry) {
      let list = into.fields.get(name);
      if (!list) into.fields.set(name, (list = { fields: null, entries: null }));
      list.entries ??= new Map();
      list.entries.set(selector, entry);
    } else into.fields.set(name, node);
    if (cur.peek() === ',') cur.i++;
    else return;
  }
}

const decodeCache = new Map<string, FieldTree | null>();
const DECODE_CACHE_MAX = 4096;

/**
 * Decodes an applied-fields annotation. Returns null when it is not a valid encoding (hand-edited,
 * another version): the plan then removes nothing, which is the safe direction.
 */
export function decodeFieldTree(encoded: string): FieldTree | null {
  const hit = decodeCache.get(encoded);
  if (hit !== undefined) return hit;
  let tree: FieldTree | null = leaf();
  try {
    const cur = new Cursor(encoded);
    parseItems(cur, tree);
    if (cur.i !== encoded.length) throw new Error(`trailing input at ${cur.i}`);
  } catch {
    tree = null;
  }
  if (decodeCache.size >= DECODE_CACHE_MAX) decodeCache.clear();
  decodeCache.set(encoded, tree);
  return tree;
}
