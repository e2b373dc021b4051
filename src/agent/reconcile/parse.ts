/**
 * The parse stage: manifest files (multi-document YAML, or JSON) into objects, each with the file
 * and 1-based line it came from. `*List` kinds are flattened, empty and comment-only documents are
 * skipped, and every problem is reported as `file:line: what is wrong: what to do`. Pure: the files
 * arrive as strings; nothing is resolved against a cluster here (see resolve.ts).
 */
import { LineCounter, isMap, isSeq, parseAllDocuments, type Document } from 'yaml';
import type { Problem } from '../../common/errors.js';
import { ProblemCode } from '../../protocol/problems.js';
import { objectKey } from '../../common/object-id.js';
import type { ParsedObject, SourceRef } from './types.js';
import type { KubeObject } from '../kube/types.js';
import { isPlainObject } from './normalize.js';

export interface ManifestInput {
  path: string;
  content: string;
}

export interface ParseResult {
  objects: ParsedObject[];
  errors: Problem[];
}

function problem(code: string, source: SourceRef, what: string, object?: string): Problem {
  return {
    code,
    message: `${source.file}:${source.line}: ${what}`,
    file: source.file,
    line: source.line,
    ...(object ? { object } : {}),
  };
}

/** Checks the fields every object needs; returns the first problem in words, or undefined. */
function validate(value: unknown): string | undefined {
  if (!isPlainObject(value))
    return 'document is not an object: every document must be a Kubernetes object (a mapping with apiVersion, kind and metadata)';
  if (typeof value.apiVersion !== 'string' || !value.apiVersion)
    return 'object has no apiVersion: every object needs one, e.g. `apiVersion: apps/v1`';
  if (typeof value.kind !== 'string' || !value.kind)
    return 'object has no kind: every object needs one, e.g. `kind: Deployment`';
  const meta = value.metadata;
  if (!isPlainObject(meta)) return 'object has no metadata: every object needs metadata.name';
  if (typeof meta.name !== 'string' || !meta.name) {
    return meta.generateName
      ? 'object uses metadata.generateName: GitOps needs a stable identity, set metadata.name instead'
      : 'object has no metadata.name: every object needs a name';
  }
  if (meta.namespace !== undefined && (typeof meta.namespace !== 'string' || !meta.namespace))
    return 'metadata.namespace is not a non-empty string: set a namespace name or leave the field out';
  return undefined;
}

interface Found {
  value: unknown;
  line: number;
}

function isList(value: unknown): value is { kind: string; items: unknown[] } {
  return (
    isPlainObject(value) && typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items)
  );
}

/**
 * Where a JSON text's values start, found in one pass without building anything: the line of the
 * top-level value and of each element of a top-level object's `items` array. Undefined when an
 * object repeats a key (the YAML parser then reports it, as it does for YAML files).
 */
function scanJson(text: string): { line: number; itemLines: number[] } | undefined {
  // One frame per open object or array: the keys seen (objects) or whether it is the top `items`.
  const stack: Array<{ keys: Set<string> | undefined; items: boolean }> = [];
  const itemLines: number[] = [];
  let line = 1;
  let first = 0;
  let expectKey = false;
  let lastKey = '';
  let pendingItem = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 10) {
      line++;
      continue;
    }
    if (c === 32 || c === 9 || c === 13) continue;
    if (first === 0) first = line;
    const top = stack[stack.length - 1];
    if (pendingItem && top?.items && c !== 93) itemLines.push(line);
    pendingItem = false;
    switch (c) {
      case 34: {
        // A string: find its closing quote (one not escaped by an odd run of backslashes).
        let end = i;
        for (;;) {
          end = text.indexOf('"', end + 1);
          if (end < 0) return { line: first, itemLines };
          let slashes = 0;
          while (text.charCodeAt(end - 1 - slashes) === 92) slashes++;
          if (slashes % 2 === 0) break;
        }
        if (expectKey && top?.keys) {
          lastKey = text.slice(i + 1, end);
          if (top.keys.has(lastKey)) return undefined;
          top.keys.add(lastKey);
          expectKey = false;
        }
        i = end;
        break;
      }
      case 123: // {
        stack.push({ keys: new Set(), items: false });
        expectKey = true;
        break;
      case 91: // [
        stack.push({ keys: undefined, items: stack.length === 1 && lastKey === 'items' });
        pendingItem = true;
        break;
      case 125: // }
      case 93: // ]
        stack.pop();
        break;
      case 44: // ,
        if (top?.keys) expectKey = true;
        else pendingItem = true;
        break;
      default:
        break;
    }
  }
  return { line: first || 1, itemLines };
}

/**
 * A `.json` file read with JSON.parse, which is many times faster than the YAML parser on large
 * generated files; lines come from one cheap scan. Undefined when the text is not plain valid JSON
 * (a syntax error, a repeated key): the YAML parser then reads it and reports where.
 */
function jsonDocumentsOf(file: ManifestInput): Found[] | undefined {
  let value: unknown;
  try {
    value = JSON.parse(file.content);
  } catch {
    return undefined;
  }
  const scan = scanJson(file.content);
  if (!scan) return undefined;
  if (value === null) return [];
  if (isList(value)) return value.items.map((item, i) => ({ value: item, line: scan.itemLines[i] ?? scan.line }));
  return [{ value, line: scan.line }];
}

/** The documents of one YAML (or JSON) file, each with its line; syntax errors pushed to `errors`. */
function documentsOf(file: ManifestInput, errors: Problem[]): Found[] {
  if (file.path.endsWith('.json')) {
    const fast = jsonDocumentsOf(file);
    if (fast) return fast;
  }
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(file.content, { lineCounter, prettyErrors: true, strict: true, uniqueKeys: true });
  const lineAt = (offset: number): number => lineCounter.linePos(offset).line;
  const found: Found[] = [];
  for (const doc of docs as Document.Parsed[]) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const line = e.linePos?.[0]?.line ?? lineAt(e.pos[0]);
        const first = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
        errors.push(
          problem(
            ProblemCode.MANIFEST_SYNTAX,
            { file: file.path, line },
            `invalid ${file.path.endsWith('.json') ? 'JSON' : 'YAML'}: ${first}: fix the syntax`,
          ),
        );
      }
      continue;
    }
    const contents = doc.contents;
    if (contents === null) continue;
    const value = doc.toJS({ maxAliasCount: 1000 }) as unknown;
    // Empty documents and documents holding only comments parse to null.
    if (value === null || value === undefined) continue;
    const line = lineAt(contents.range[0]);
    if (isList(value) && isMap(contents)) {
      const itemsNode = contents.get('items', true);
      value.items.forEach((item, i) => {
        const node = isSeq(itemsNode) ? itemsNode.items[i] : undefined;
        const at =
          node && typeof node === 'object' && 'range' in node && Array.isArray(node.range)
            ? lineAt(node.range[0] as number)
            : line;
        found.push({ value: item, line: at });
      });
      continue;
    }
    if (isList(value)) {
      for (const item of value.items) found.push({ value: item, line });
      continue;
    }
    found.push({ value, line });
  }
  return found;
}

/**
 * Parses manifest files into objects. Returns every problem found (not just the first) so a user
 * can fix a commit in one go; callers apply nothing when `errors` is not empty. Duplicates (same
 * group, kind, namespace as written and name) are rejected naming both places.
 */
export function parseManifests(files: readonly ManifestInput[]): ParseResult {
  const objects: ParsedObject[] = [];
  const errors: Problem[] = [];
  const seen = new Map<string, SourceRef>();
  for (const file of files) {
    for (const { value, line } of documentsOf(file, errors)) {
      const source: SourceRef = { file: file.path, line };
      const invalid = validate(value);
      if (invalid) {
        errors.push(problem(ProblemCode.MANIFEST_INVALID_OBJECT, source, invalid));
        continue;
      }
      const object = value as KubeObject;
      const ref = {
        apiVersion: object.apiVersion,
        kind: object.kind,
        namespace: object.metadata.namespace,
        name: object.metadata.name,
      };
      const key = objectKey(ref);
      const first = seen.get(key);
      const label = `${object.kind}/${object.metadata.namespace ? `${object.metadata.namespace}/` : ''}${object.metadata.name}`;
      if (first) {
        errors.push(
          problem(
            ProblemCode.MANIFEST_DUPLICATE_OBJECT,
            source,
            `${label} is also defined at ${first.file}:${first.line}: keep one definition of each object`,
            label,
          ),
        );
        continue;
      }
      seen.set(key, source);
      objects.push({ object, source });
    }
  }
  return { objects, errors };
}
