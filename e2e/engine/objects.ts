/**
 * Generated manifests for scale tests and benchmarks: the mixed 1,000-object set of the
 * DEVELOPERS' guide's speed goals, in plain Node (no jest imports) so bench scripts can use it.
 */

/** Half ConfigMaps, a tenth Secrets with stringData, a fifth Services, the rest Deployments. */
export function mixedObjects(n: number): unknown[] {
  const out: unknown[] = [];
  for (let i = 0; i < n; i++) {
    const r = i % 10;
    const name = `obj-${i}`;
    if (r < 5) out.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { index: String(i), text: 'x'.repeat(64) } });
    else if (r === 5) out.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, stringData: { password: `pw-${i}` } });
    else if (r < 8) out.push({ apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }] } });
    else
      out.push({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: name } },
          template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: 'nginx:1.27', resources: { requests: { cpu: '0.5', memory: '1024Mi' } } }] } },
        },
      });
  }
  return out;
}
