/**
 * API discovery: which group/version/kind is served as which resource, namespaced or not. Uses
 * aggregated discovery (two requests for the whole cluster: `/api` and `/apis` as
 * APIGroupDiscoveryList v2, then v2beta1) and falls back to the legacy per-group-version walk for
 * older servers. The answer is cached; `resolve` refreshes it once when a kind is unknown, which is
 * what happens right after a CustomResourceDefinition is applied.
 */
import { gvkKey } from '../../common/object-id.js';
import type { KubeClient } from './client.js';
import type { ResourceInfo } from './types.js';

const AGGREGATED_ACCEPT =
  'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json';

/** Shortest time between two refreshes triggered by unknown kinds, so a typo cannot hammer the server. */
const MIN_REFRESH_INTERVAL_MS = 250;

interface AggregatedResource {
  resource: string;
  responseKind?: { group?: string; version?: string; kind?: string };
  scope?: 'Namespaced' | 'Cluster';
}
interface AggregatedList {
  kind?: string;
  items?: Array<{ metadata?: { name?: string }; versions?: Array<{ version: string; resources?: AggregatedResource[] }> }>;
}
interface LegacyResourceList {
  resources?: Array<{ name: string; kind: string; namespaced: boolean }>;
}

function keyOf(group: string, version: string, kind: string): string {
  return gvkKey({ group, version, kind });
}

/** Cached discovery of every served resource. */
export class Discovery {
  private byGvk = new Map<string, ResourceInfo>();
  private loaded: Promise<void> | undefined;
  private lastRefresh = 0;
  /** Bumped whenever the discovered set is replaced, so callers can tell their resolutions are stale. */
  generation = 0;

  constructor(private readonly client: KubeClient) {}

  /** Resource for a group/version/kind, refreshing discovery once if it is not known yet. */
  async resolve(group: string, version: string, kind: string): Promise<ResourceInfo | undefined> {
    await this.ensureLoaded();
    const key = keyOf(group, version, kind);
    const hit = this.byGvk.get(key);
    if (hit) return hit;
    if (Date.now() - this.lastRefresh >= MIN_REFRESH_INTERVAL_MS) {
      await this.refresh();
      return this.byGvk.get(key);
    }
    return undefined;
  }

  /** The preferred served version of a group/kind (for prune, where the inventory stores no version). */
  findKind(group: string, kind: string): ResourceInfo | undefined {
    for (const info of this.byGvk.values()) if (info.group === group && info.kind === kind) return info;
    return undefined;
  }

  /** Known resource without any request (undefined when not loaded or unknown). */
  peek(group: string, version: string, kind: string): ResourceInfo | undefined {
    return this.byGvk.get(keyOf(group, version, kind));
  }

  async ensureLoaded(): Promise<void> {
    if (!this.loaded) this.loaded = this.load();
    return this.loaded;
  }

  /** Re-reads discovery (after a CRD is applied or when a kind was unknown). */
  async refresh(): Promise<void> {
    this.loaded = this.load();
    return this.loaded;
  }

  private async load(): Promise<void> {
    this.lastRefresh = Date.now();
    const next = new Map<string, ResourceInfo>();
    try {
      const [core, groups] = await Promise.all([
        this.client.request<AggregatedList>('GET', '/api', { accept: AGGREGATED_ACCEPT }),
        this.client.request<AggregatedList>('GET', '/apis', { accept: AGGREGATED_ACCEPT }),
      ]);
      if (core.kind !== 'APIGroupDiscoveryList' || groups.kind !== 'APIGroupDiscoveryList') {
        await this.loadLegacy(next);
      } else {
        for (const list of [core, groups]) addAggregated(next, list);
      }
    } catch (err) {
      this.loaded = undefined; // let the next call try again
      throw err;
    }
    this.byGvk = next;
    this.generation++;
  }

  private async loadLegacy(into: Map<string, ResourceInfo>): Promise<void> {
    const gvs: Array<{ group: string; version: string; path: string }> = [];
    const core = await this.client.request<{ versions?: string[] }>('GET', '/api');
    for (const v of core.versions ?? []) gvs.push({ group: '', version: v, path: `/api/${v}` });
    const apis = await this.client.request<{ groups?: Array<{ name: string; versions: Array<{ version: string }> }> }>('GET', '/apis');
    for (const g of apis.groups ?? []) for (const v of g.versions) gvs.push({ group: g.name, version: v.version, path: `/apis/${g.name}/${v.version}` });
    await Promise.all(
      gvs.map(async (gv) => {
        const list = await this.client.request<LegacyResourceList>('GET', gv.path);
        for (const r of list.resources ?? []) {
          if (r.name.includes('/')) continue; // subresource
          into.set(keyOf(gv.group, gv.version, r.kind), { group: gv.group, version: gv.version, kind: r.kind, plural: r.name, namespaced: r.namespaced });
        }
      }),
    );
  }
}

function addAggregated(into: Map<string, ResourceInfo>, list: AggregatedList): void {
  for (const item of list.items ?? []) {
    const group = item.metadata?.name ?? '';
    for (const v of item.versions ?? []) {
      for (const r of v.resources ?? []) {
        const kind = r.responseKind?.kind;
        if (!kind) continue;
        into.set(keyOf(group, v.version, kind), { group, version: v.version, kind, plural: r.resource, namespaced: r.scope === 'Namespaced' });
      }
    }
  }
}
