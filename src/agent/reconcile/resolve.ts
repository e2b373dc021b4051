/**
 * Resolve stage: parsed objects → objects the API knows, via discovery. Fills the default
 * namespace of namespaced objects, rejects cluster-scoped objects that carry a namespace, names
 * file:line for kinds the server does not serve, and finds duplicates after defaulting. A custom
 * resource whose CustomResourceDefinition is in the same set is resolved from that CRD (plural and
 * scope), so it can be applied in the same run once the CRD is Established.
 */
import type { Problem } from '../../common/errors.js';
import { ProblemCode } from '../../protocol/problems.js';
import { objectId, objectKey } from '../../common/object-id.js';
import { splitApiVersion } from '../../common/object-id.js';
import type { Discovery } from '../kube/discovery.js';
import type { ParsedObject, ResolvedObject } from './types.js';
import type { ResourceInfo } from '../kube/types.js';

/** The part of kube/discovery.ts resolve needs (a table in tests). */
export type DiscoveryLookup = Pick<Discovery, 'ensureLoaded' | 'peek' | 'resolve'>;

export interface ResolveResult {
  objects: ResolvedObject[];
  errors: Problem[];
  /** Keys of objects resolved from a CRD of the same set (not yet served when resolved). */
  fromSameSetCrd: Set<string>;
}

const CRD_GROUP = 'apiextensions.k8s.io';

interface CrdSpec {
  group?: string;
  scope?: string;
  names?: { kind?: string; plural?: string };
  versions?: Array<{ name?: string; served?: boolean }>;
}

/** ResourceInfo for every group/version/kind that a CRD in the set will serve. */
export function resourcesFromCrds(parsed: ParsedObject[]): Map<string, ResourceInfo> {
  const out = new Map<string, ResourceInfo>();
  for (const p of parsed) {
    const o = p.object;
    if (o.kind !== 'CustomResourceDefinition' || splitApiVersion(o.apiVersion).group !== CRD_GROUP) continue;
    const spec = (o.spec ?? {}) as CrdSpec;
    const kind = spec.names?.kind;
    const plural = spec.names?.plural;
    if (!spec.group || !kind || !plural) continue;
    for (const v of spec.versions ?? []) {
      if (!v.name || v.served === false) continue;
      out.set(`${spec.group}/${v.name}/${kind}`, {
        group: spec.group,
        version: v.name,
        kind,
        plural,
        namespaced: spec.scope !== 'Cluster',
      });
    }
  }
  return out;
}

function problem(p: ParsedObject, code: string, message: string, id?: string): Problem {
  return {
    code,
    message: `${p.source.file}:${p.source.line}: ${message}`,
    file: p.source.file,
    line: p.source.line,
    ...(id ? { object: id } : {}),
  };
}

/** Resolves every parsed object; problems are collected, never thrown per object. */
export async function resolveObjects(
  parsed: ParsedObject[],
  discovery: DiscoveryLookup,
  defaultNamespace: string,
): Promise<ResolveResult> {
  const crdResources = resourcesFromCrds(parsed);
  const objects: ResolvedObject[] = [];
  const errors: Problem[] = [];
  const fromSameSetCrd = new Set<string>();
  const seen = new Map<string, ParsedObject>();
  await discovery.ensureLoaded();
  for (const p of parsed) {
    const o = p.object;
    const { group, version } = splitApiVersion(o.apiVersion);
    let resource = discovery.peek(group, version, o.kind);
    let fromCrd = false;
    if (!resource) {
      resource = crdResources.get(`${group}/${version}/${o.kind}`);
      fromCrd = resource !== undefined;
    }
    // Unknown here and not defined in this set: maybe a CRD was applied since discovery was read.
    if (!resource) resource = await discovery.resolve(group, version, o.kind);
    if (!resource) {
      errors.push(
        problem(
          p,
          ProblemCode.UNKNOWN_KIND,
          `${o.apiVersion} ${o.kind} "${o.metadata?.name ?? ''}": the API server does not serve this kind (is its CustomResourceDefinition installed?)`,
        ),
      );
      continue;
    }
    const ns = o.metadata.namespace;
    let namespace: string | undefined;
    if (resource.namespaced) {
      namespace = ns || defaultNamespace;
    } else if (ns) {
      const id = objectId({ kind: o.kind, name: o.metadata.name });
      errors.push(
        problem(
          p,
          ProblemCode.NAMESPACE_ON_CLUSTER_SCOPED,
          `${id}: ${o.kind} is cluster-scoped and cannot have metadata.namespace "${ns}"`,
          id,
        ),
      );
      continue;
    }
    const object = namespace === ns ? o : { ...o, metadata: { ...o.metadata, namespace } };
    const ref = { apiVersion: o.apiVersion, kind: o.kind, namespace, name: o.metadata.name };
    const id = objectId(ref);
    const key = objectKey(ref);
    const first = seen.get(key);
    if (first) {
      errors.push(
        problem(
          p,
          ProblemCode.DUPLICATE_OBJECT,
          `${id}: defined twice (first at ${first.source.file}:${first.source.line})`,
          id,
        ),
      );
      continue;
    }
    seen.set(key, p);
    if (fromCrd) fromSameSetCrd.add(key);
    objects.push({ object, source: p.source, id, key, resource });
  }
  return { objects, errors, fromSameSetCrd };
}
