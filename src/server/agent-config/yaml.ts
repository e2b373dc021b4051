/**
 * config.yaml as GitLab read it: kas turned the YAML into JSON with sigs.k8s.io/yaml (go-yaml v2
 * underneath) before protojson saw it, so the file is read here with the same YAML 1.1 rules:
 * `yes`/`no`/`on`/`off`/`y`/`n` are booleans, `0x1F` and `0777` are numbers, merge keys (`<<`)
 * merge, a key given twice keeps its last value, only the first document counts, and dates
 * (`2024-01-01`) and sexagesimals (`1:30`) stay strings. Pure; owns positions too: every value
 * can be traced back to the line and column of its key or value, so every problem can name them.
 */
import {
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Document,
  type Node as YamlNode,
  type Tags,
} from 'yaml';
import { errorMessage } from '../../common/errors.js';

/** Where something is in the file (1-based). */
export interface Position {
  line: number;
  column: number;
}

export type YamlPath = readonly (string | number)[];

export interface ParsedYaml {
  /** The first document as plain data (undefined for an empty file or only comments). */
  value: unknown;
  /** Position of the key at `path` (or of the list item), falling back to the nearest parent. */
  keyAt(path: YamlPath): Position | undefined;
  /** Position of the value at `path`, falling back to its key, then to the nearest parent. */
  valueAt(path: YamlPath): Position | undefined;
}

export type YamlResult = { ok: true; yaml: ParsedYaml } | { ok: false; message: string; position?: Position };

/** YAML 1.1 as go-yaml v2 resolves plain scalars: no timestamps and no base-60 numbers. */
function goYamlTags(tags: Tags): Tags {
  return tags.filter((t) => {
    const tag = t as { tag?: string; format?: string };
    return tag.format !== 'TIME' && tag.tag !== 'tag:yaml.org,2002:timestamp';
  });
}

/** Parse the text; `maxAliasCount` bounds how far aliases may expand (no "billion laughs"). */
export function parseConfigYaml(text: string, maxAliasCount: number): YamlResult {
  const lines = new LineCounter();
  // go-yaml stops after the first document, so later ones are not even parsed for errors.
  const doc = parseDocument(text, {
    lineCounter: lines,
    version: '1.1',
    customTags: goYamlTags,
    uniqueKeys: false,
    prettyErrors: true,
    keepSourceTokens: false,
  });
  const pos = (offset: number): Position => {
    const p = lines.linePos(offset);
    return { line: p.line, column: p.col };
  };
  const first = doc.errors.find((e) => !/multiple documents|Source contains multiple/i.test(e.message));
  if (first) return { ok: false, message: first.message.split('\n')[0], position: pos(first.pos[0]) };
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount });
  } catch (err) {
    // The yaml package throws (a ReferenceError) for too many alias expansions or an unresolved alias.
    const message = /excessive alias count/i.test(errorMessage(err))
      ? `YAML aliases expand to more than ${maxAliasCount} nodes; write the values out or use fewer aliases`
      : `YAML cannot be resolved: ${errorMessage(err).split('\n')[0].slice(0, 200)}`;
    return { ok: false, message };
  }
  return {
    ok: true,
    yaml: {
      value: value ?? undefined,
      keyAt: (path) => keyAt(doc, path, pos),
      valueAt: (path) => valueAt(doc, path, pos),
    },
  };
}

type Pos = (offset: number) => Position;

function nodeAt(doc: Document, path: YamlPath): unknown {
  return path.length ? doc.getIn(path, true) : doc.contents;
}

function rangeOf(node: unknown): [number, number, number] | undefined {
  return node && typeof node === 'object' && 'range' in node ? ((node as YamlNode).range ?? undefined) : undefined;
}

/** The key node of `key` in the mapping at `parent`, or the item of a list. */
function keyNode(doc: Document, parent: YamlPath, key: string | number): unknown {
  const container = nodeAt(doc, parent);
  if (isMap(container)) {
    // The last one: a key given twice keeps its last value, so that is the one a problem is about.
    let found: unknown;
    for (const pair of container.items) {
      const k = pair.key;
      if (isScalar(k) && String(k.value) === String(key)) found = k;
    }
    return found;
  }
  if (isSeq(container) && typeof key === 'number') return container.items[key];
  return undefined;
}

function keyAt(doc: Document, path: YamlPath, pos: Pos): Position | undefined {
  for (let n = path.length; n > 0; n--) {
    const range = rangeOf(keyNode(doc, path.slice(0, n - 1), path[n - 1]));
    if (range) return pos(range[0]);
  }
  const root = rangeOf(doc.contents);
  return root ? pos(root[0]) : undefined;
}

function valueAt(doc: Document, path: YamlPath, pos: Pos): Position | undefined {
  const node = nodeAt(doc, path);
  const range = rangeOf(node);
  // An empty value (`id:`) has no text of its own: point at its key.
  if (range && !(isScalar(node) && range[0] === range[1])) return pos(range[0]);
  return keyAt(doc, path, pos);
}
