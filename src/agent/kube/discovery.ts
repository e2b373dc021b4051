/**
 * API discovery: which group/version/kind is served as which resource, namespaced or not. Uses
 * aggregated discovery (two requests for the whole cluster: `/api` and `/apis` as
 * APIGroupDiscoveryList v2, then v2beta1) and falls back to the legacy per-group-version walk for
 * older servers. The answer is cached; `resolve` refreshes it once when a kind is unknown, which is
 * what happens right after a CustomResourceDefinition is applied. For each group/kind it keeps the
 * server's preferred version explicitly (aggregated discovery lists versions in preference order;
 * legacy discovery names each group's preferredVersion), never whichever answer arrived first.
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
  items?: Array<{
    metadata?: { name?: string };
    versions?: Array<{ version: string; resources?: AggregatedResource[] }>;
  }>;
}
interface LegacyResourceList {
  resources?: Array<{ name: string; kind: string; namespaced: boolean }>;
}

function keyOf(group: string, version: string, kind: string): string {
  return gvkKey({ group, version, kind });
}

/** What one load found: every served group/version/kind, and the preferred version per group/kind. */
interface Served {
  byGvk: Map<string, ResourceInfo>;
  /** `group/kind` → the resource of the server's preferred version that serves the kind. */
  preferred: Map<string, ResourceInfo>;
}

const groupKind = (group: string, kind: string): string => `${group}/${kind}`;

/** Cached discovery of every served resource. */
export class Discovery {
  private byGvk = new Map<string, ResourceInfo>();
  private byGroupKind = new Map<string, ResourceInfo>();
  private loaded: Promise<void> | undefined;
  private lastRefresh = 0;
  /** Bumped whenever the discovered set is replaced, so callers can tell their resolutions are stale. */
  generation = 0;

  /** `aggregated: false` walks legacy discovery even on servers that aggregate (tests of that path). */
  constructor(
    private readonly client: KubeClient,
    private readonly options: { aggregated?: boolean } = {},
  ) {}

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

  /**
   * The server's preferred version of a group/kind (prune's fallback when the version an inventory
   * recorded is no longer served).
   */
  preferred(group: string, kind: string): ResourceInfo | undefined {
    return this.byGroupKind.get(groupKind(group, kind));
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
    let next: Served;
    try {
      next = this.options.aggregated === false ? await this.loadLegacy() : await this.loadAggregated();
    } catch (err) {
      this.loaded = undefined; // let the next call try again
      throw err;
    }
    this.byGvk = next.byGvk;
    this.byGroupKind = next.preferred;
    this.generation++;
  }

  /** Two requests for the whole cluster; legacy discovery when the server does not aggregate. */
  private async loadAggregated(): Promise<Served> {
    const [core, groups] = await Promise.all([
      this.client.request<AggregatedList>('GET', '/api', { accept: AGGREGATED_ACCEPT }),
      this.client.request<AggregatedList>('GET', '/apis', { accept: AGGREGATED_ACCEPT }),
    ]);
    if (core.kind !== 'APIGroupDiscoveryList' || groups.kind !== 'APIGroupDiscoveryList') return this.loadLegacy();
    return servedOf(aggregatedVersions([core, groups]));
  }

  /** One request per group/version; each group's versions kept in the server's preference order. */
  private async loadLegacy(): Promise<Served> {
    const core = await this.client.request<{ versions?: string[] }>('GET', '/api');
    const apis = await this.client.request<LegacyGroupList>('GET', '/apis');
    const gvs = legacyGroupVersions(core, apis);
    const lists = await Promise.all(gvs.map((gv) => this.client.request<LegacyResourceList>('GET', gv.path)));
    return servedOf(
      gvs.map((gv, i) => ({
        group: gv.group,
        version: gv.version,
        resources: (lists[i].resources ?? [])
          .filter((r) => !r.name.includes('/'))
          .map((r) => ({ kind: r.kind, plural: r.name, namespaced: r.namespaced })),
      })),
    );
  }
}

interface LegacyGroupList {
  groups?: Array<{ name: string; versions: Array<{ version: string }>; preferredVersion?: { version: string } }>;
}

/** One served group/version and its resources (subresources left out). */
export interface ServedVersion {
  group: string;
  version: string;
  resources: Array<{ kind: string; plural: string; namespaced: boolean }>;
}

/**
 * Legacy discovery's group/versions, each group's preferredVersion first and then the others in
 * the order listed (the server lists them by priority).
 */
export function legacyGroupVersions(
  core: { versions?: string[] },
  apis: LegacyGroupList,
): Array<{ group: string; version: string; path: string }> {
  const out = (core.versions ?? []).map((v) => ({ group: '', version: v, path: `/api/${v}` }));
  for (const g of apis.groups ?? []) {
    const preferred = g.preferredVersion?.version;
    const versions = g.versions.map((v) => v.version);
    const ordered =
      preferred && versions.includes(preferred) ? [preferred, ...versions.filter((v) => v !== preferred)] : versions;
    for (const v of ordered) out.push({ group: g.name, version: v, path: `/apis/${g.name}/${v}` });
  }
  return out;
}

/** Aggregated discovery's versions, in the order listed (preferred first, as the API documents). */
function aggregatedVersions(lists: AggregatedList[]): ServedVersion[] {
  const out: ServedVersion[] = [];
  for (const list of lists) {
    for (const item of list.items ?? []) {
      const group = item.metadata?.name ?? '';
      for (const v of item.versions ?? []) {
        const resources = (v.resources ?? []).flatMap((r) =>
          r.responseKind?.kind
            ? [{ kind: r.responseKind.kind, plural: r.resource, namespaced: r.scope === 'Namespaced' }]
            : [],
        );
        out.push({ group, version: v.version, resources });
      }
    }
  }
  return out;
}

/**
 * Every served kind, and per group/kind the first version (in preference order) that serves it:
 * the group's preferred version when it has the kind, else the next one that does.
 */
export function servedOf(versions: readonly ServedVersion[]): Served {
  const byGvk = new Map<string, ResourceInfo>();
  const preferred = new Map<string, ResourceInfo>();
  for (const v of versions) {
    for (const r of v.resources) {
      const info: ResourceInfo = {
        group: v.group,
        version: v.version,
        kind: r.kind,
        plural: r.plural,
        namespaced: r.namespaced,
      };
      byGvk.set(keyOf(v.group, v.version, r.kind), info);
      const gk = groupKind(v.group, r.kind);
      if (!preferred.has(gk)) preferred.set(gk, info);
    }
  }
  return { byGvk, preferred };
}
