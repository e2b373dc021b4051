/**
 * OpenAPI v3 from the API server, fetched lazily per group/version and cached by the hash the
 * server puts in each document's URL (so a document is downloaded once per content, also across
 * restarts when a state dir is given). Gives `listKeysFor(gvk)`: which lists merge by key
 * (`x-kubernetes-list-map-keys`), extracted by the pure schema.ts beside it.
 *
 * A document is kept only until the list keys of every kind it describes are extracted: the
 * documents are megabytes each, the keys a few hundred bytes. The disk cache is best-effort: an
 * unwritable state dir costs a download per restart, never an apply.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { KubeClient } from './client.js';
import type { Logger } from '../../common/logger.js';
import { silentLogger } from '../../common/logger.js';
import { errorMessage } from '../../common/errors.js';
import { gvkKey, gvkOf } from '../../common/object-id.js';
import { extractListKeys, type GroupVersionKind, type ListKeys } from './schema.js';

interface OpenApiIndex {
  paths?: Record<string, { serverRelativeURL?: string }>;
}

/** Lazily fetched OpenAPI v3 documents and the list keys derived from them. */
export class OpenApi {
  private index: Promise<OpenApiIndex> | undefined;
  /** Per document URL: the list keys of each kind it describes (`group/version/kind`). */
  private docs = new Map<string, Promise<Map<string, ListKeys>>>();
  private keys = new Map<string, ListKeys>();
  private cacheWarned = false;

  constructor(
    private readonly client: KubeClient,
    private readonly cacheDir?: string,
    private readonly log: Logger = silentLogger(),
  ) {}

  /** List keys for a kind; an empty answer when the server publishes no schema for it. */
  async listKeysFor(gvk: GroupVersionKind): Promise<ListKeys> {
    const k = gvkKey(gvk);
    const hit = this.keys.get(k);
    if (hit) return hit;
    const byKind = await this.docFor(gvk.group, gvk.version);
    const keys = byKind?.get(k) ?? EMPTY;
    this.keys.set(k, keys);
    return keys;
  }

  /** List keys already known for a kind, without any request. */
  peekListKeys(obj: { object: { apiVersion: string; kind: string } }): ListKeys | undefined {
    return this.keys.get(gvkKey(gvkOf(obj.object)));
  }

  /** Forget the index (a CRD was added or changed): documents are re-fetched when their hash moved. */
  invalidate(): void {
    this.index = undefined;
    this.keys.clear();
  }

  private async docFor(group: string, version: string): Promise<Map<string, ListKeys> | undefined> {
    const gvPath = group === '' ? `api/${version}` : `apis/${group}/${version}`;
    if (!this.index) {
      this.index = this.client.request<OpenApiIndex>('GET', '/openapi/v3');
      this.index.catch(() => (this.index = undefined));
    }
    const idx = await this.index;
    const url = idx.paths?.[gvPath]?.serverRelativeURL;
    if (!url) return undefined;
    let p = this.docs.get(url);
    if (!p) {
      p = this.fetchDoc(url).then((doc) => listKeysOfEveryKind(doc, group, version));
      this.docs.set(url, p);
      p.catch(() => this.docs.delete(url));
    }
    return p;
  }

  private async fetchDoc(url: string): Promise<unknown> {
    const hash = /[?&]hash=([0-9A-Fa-f]+)/.exec(url)?.[1];
    const file = this.cacheDir && hash ? path.join(this.cacheDir, 'openapi', `${hash}.json`) : undefined;
    if (file) {
      try {
        return JSON.parse(await readFile(file, 'utf8')) as unknown;
      } catch {
        /* not cached yet */
      }
    }
    const [p, q] = url.split('?');
    const query = Object.fromEntries(new URLSearchParams(q ?? ''));
    const doc = await this.client.request<unknown>('GET', p, { query });
    if (file) await this.save(file, doc);
    return doc;
  }

  /** Best-effort disk cache: a failure is logged once (warn) and then at debug, never thrown. */
  private async save(file: string, doc: unknown): Promise<void> {
    try {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, JSON.stringify(doc));
    } catch (err) {
      const fields = { dir: path.dirname(file), err: errorMessage(err) };
      if (this.cacheWarned) this.log.debug(fields, 'cannot cache OpenAPI document');
      else this.log.warn(fields, 'cannot cache OpenAPI documents: each restart downloads them again');
      this.cacheWarned = true;
    }
  }
}

const EMPTY: ListKeys = new Map();

/** The list keys of every kind of `group/version` a document describes, keyed `group/version/kind`. */
export function listKeysOfEveryKind(doc: unknown, group: string, version: string): Map<string, ListKeys> {
  const out = new Map<string, ListKeys>();
  const schemas =
    (doc as { components?: { schemas?: Record<string, { 'x-kubernetes-group-version-kind'?: unknown }> } } | undefined)
      ?.components?.schemas ?? {};
  for (const name in schemas) {
    const tags = schemas[name]?.['x-kubernetes-group-version-kind'];
    if (!Array.isArray(tags)) continue;
    for (const t of tags as Array<{ group?: string; version?: string; kind?: string }>) {
      if ((t.group ?? '') !== group || t.version !== version || !t.kind) continue;
      const k = `${group}/${version}/${t.kind}`;
      if (!out.has(k)) out.set(k, extractListKeys(doc, { group, version, kind: t.kind }));
    }
  }
  return out;
}
