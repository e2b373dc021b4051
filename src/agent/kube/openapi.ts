/**
 * OpenAPI v3 from the API server, fetched lazily per group/version and cached by the hash the
 * server puts in each document's URL (so a document is downloaded once per content, also across
 * restarts when a state dir is given). Gives `listKeysFor(gvk)`: which lists merge by key
 * (`x-kubernetes-list-map-keys`), extracted by the pure reconcile/schema.ts.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { KubeClient } from './client.js';
import { extractListKeys, type ListKeys } from '../reconcile/schema.js';

interface OpenApiIndex {
  paths?: Record<string, { serverRelativeURL?: string }>;
}

export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

/** Lazily fetched OpenAPI v3 documents and the list keys derived from them. */
export class OpenApi {
  private index: Promise<OpenApiIndex> | undefined;
  private docs = new Map<string, Promise<unknown>>();
  private keys = new Map<string, ListKeys>();

  constructor(
    private readonly client: KubeClient,
    private readonly cacheDir?: string,
  ) {}

  /** List keys for a kind; an empty answer when the server publishes no schema for it. */
  async listKeysFor(gvk: GroupVersionKind): Promise<ListKeys> {
    const k = `${gvk.group}/${gvk.version}/${gvk.kind}`;
    const hit = this.keys.get(k);
    if (hit) return hit;
    const doc = await this.docFor(gvk.group, gvk.version);
    const keys = extractListKeys(doc ?? {}, gvk);
    this.keys.set(k, keys);
    return keys;
  }

  /** List keys already known for a kind, without any request. */
  peekListKeys(obj: { object: { apiVersion: string; kind: string } }): ListKeys | undefined {
    const slash = obj.object.apiVersion.indexOf('/');
    const gv = slash < 0 ? `/${obj.object.apiVersion}` : obj.object.apiVersion;
    return this.keys.get(`${gv}/${obj.object.kind}`);
  }

  /** Forget the index (a CRD was added or changed): documents are re-fetched when their hash moved. */
  invalidate(): void {
    this.index = undefined;
    this.keys.clear();
  }

  private async docFor(group: string, version: string): Promise<unknown> {
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
      p = this.fetchDoc(url);
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
    if (file) {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, JSON.stringify(doc)).catch(() => undefined);
    }
    return doc;
  }
}
