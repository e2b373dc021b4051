/**
 * Generated manifests for the engine tests and benchmarks: the mixed 1,000-object set of the
 * DEVELOPERS' guide's speed goals, the Deployment it and engine.test.ts use, a manifest project
 * config for engine units and the `Widget` CRD the custom-resource tests define. Plain Node (no
 * jest imports) so bench scripts can use it.
 */
import type { ManifestProjectConfig } from '../../src/protocol/messages.js';

/** A manifest project config for engine tests: prune on, must_match, no dry run; `overrides` win. */
export function testProjectConfig(overrides: Partial<ManifestProjectConfig> = {}): ManifestProjectConfig {
  return {
    id: 'test',
    ref: {},
    defaultNamespace: 'default',
    paths: [],
    reconcileTimeoutMs: 60_000,
    dryRunStrategy: 'none',
    prune: true,
    pruneTimeoutMs: 60_000,
    prunePropagationPolicy: 'background',
    inventoryPolicy: 'must_match',
    ...overrides,
  };
}

/**
 * A namespaced `Widget` CRD (plural `widgets`) in `group`, serving `versions` with one schema;
 * the first version is the storage one.
 */
export function widgetCrd(group: string, schema: Record<string, unknown>, versions: readonly string[] = ['v1']) {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `widgets.${group}` },
    spec: {
      group,
      scope: 'Namespaced',
      names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
      versions: versions.map((name, i) => ({
        name,
        served: true,
        storage: i === 0,
        schema: { openAPIV3Schema: schema },
      })),
    },
  };
}

/**
 * A one-replica Deployment `name` (nginx:1.27, with resource requests); `extra` is merged into its spec. The return
 * type is inferred so tests can edit its fields.
 */
export function appDeployment(name: string, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [{ name: 'app', image: 'nginx:1.27', resources: { requests: { cpu: '0.5', memory: '1024Mi' } } }],
        },
      },
      ...extra,
    },
  };
}

/** Half ConfigMaps, a tenth Secrets with stringData, a fifth Services, the rest Deployments. */
export function mixedObjects(n: number): unknown[] {
  const out: unknown[] = [];
  for (let i = 0; i < n; i++) {
    const r = i % 10;
    const name = `obj-${i}`;
    if (r < 5)
      out.push({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name },
        data: { index: String(i), text: 'x'.repeat(64) },
      });
    else if (r === 5)
      out.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, stringData: { password: `pw-${i}` } });
    else if (r < 8)
      out.push({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name },
        spec: { selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }] },
      });
    else out.push(appDeployment(name));
  }
  return out;
}
