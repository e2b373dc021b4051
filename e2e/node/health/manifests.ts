/**
 * The manifests the health tests commit (e2e/node/health.test.ts), as YAML text a user would
 * write. Only the node's offline images are used (e2e/harness/images.ts): `nginx:1.27` for a
 * workload that serves, and the busybox-based pause image for one that runs a shell command
 * (exit at once, wait for a trigger file, a slow readiness probe). Every pod ends within a second
 * of its deletion (`terminationGracePeriodSeconds: 1`; a shell as pid 1 ignores SIGTERM), so
 * pruning one scenario's objects never holds up the next one's health.
 *
 * Pull policies are chosen on purpose: the pause image is `Never` pulled (it exists on the node;
 * a pull could only fail), and the two missing images show the kubelet's two reasons: `Never`
 * gives `ErrImageNeverPull` at once, `IfNotPresent` tries the (absent) registry and gives
 * `ErrImagePull`, then `ImagePullBackOff`.
 */
import { PAUSE_IMAGE } from '../../harness/images.js';

/** An image reference that no registry here has (the `localhost` host refuses the connection). */
export const MISSING_IMAGE = 'localhost/gitops-e2e/not-there:1';

/** The cli-utils depends-on annotation (src/agent/reconcile/depends-on.ts). */
const DEPENDS_ON = 'config.kubernetes.io/depends-on';

/** `---`-joined documents. */
export function documents(...docs: string[]): string {
  return docs.map((d) => d.replace(/\n*$/, '\n')).join('---\n');
}

/** Indents every line of `text` by `n` spaces (for nesting YAML blocks). */
function indent(text: string, n: number): string {
  const pad = ' '.repeat(n);
  return text
    .replace(/\n$/, '')
    .split('\n')
    .map((l) => (l ? pad + l : l))
    .join('\n');
}

/** A JSON value as a YAML flow scalar or collection (JSON is YAML). */
const flow = (value: unknown): string => JSON.stringify(value);

export interface ContainerOptions {
  /** `nginx:1.27` by default; `pause` runs `command` in the busybox image. */
  image?: string;
  imagePullPolicy?: 'Never' | 'IfNotPresent' | 'Always';
  /** A shell script run by busybox `sh -c` (only with the pause image). */
  script?: string;
  /** An exec readiness probe, first run `afterSeconds` after the start, then every second; `script` by `sh -c`. */
  readiness?: { afterSeconds: number; script?: string };
  /** hostPath folder mounted at /trigger. */
  triggerDir?: string;
}

/** The pod template's spec, indented for a Deployment's or Job's `template.spec`. */
function podSpec(c: ContainerOptions, restartPolicy?: 'Never'): string {
  const image = c.image ?? 'nginx:1.27';
  const lines = [
    ...(restartPolicy ? [`restartPolicy: ${restartPolicy}`] : []),
    'terminationGracePeriodSeconds: 1',
    'containers:',
    '- name: main',
    `  image: ${image}`,
    ...(c.imagePullPolicy ? [`  imagePullPolicy: ${c.imagePullPolicy}`] : []),
    ...(c.script !== undefined ? [`  command: ${flow(['/bin/busybox', 'sh', '-c', c.script])}`] : []),
    ...(c.readiness
      ? [
          '  readinessProbe:',
          `    exec: {command: ${flow(['/bin/busybox', 'sh', '-c', c.readiness.script ?? 'true'])}}`,
          `    initialDelaySeconds: ${c.readiness.afterSeconds}`,
          '    periodSeconds: 1',
        ]
      : []),
    ...(c.triggerDir ? ['  volumeMounts: [{name: trigger, mountPath: /trigger}]'] : []),
    ...(c.triggerDir
      ? [`volumes: [{name: trigger, hostPath: {path: ${flow(c.triggerDir)}, type: DirectoryOrCreate}}]`]
      : []),
  ];
  return lines.join('\n');
}

/** The busybox image with pull policy Never, running `script`. */
export function shell(script: string, extra: Omit<ContainerOptions, 'image' | 'script'> = {}): ContainerOptions {
  return { image: PAUSE_IMAGE, imagePullPolicy: 'Never', script, ...extra };
}

function annotations(dependsOn: readonly string[] | undefined): string {
  return dependsOn?.length ? `\n  annotations:\n    ${DEPENDS_ON}: ${flow(dependsOn.join(','))}` : '';
}

/** A Deployment `name` (label `app: <name>`) with `replicas` pods of one container. */
export function deployment(
  namespace: string,
  name: string,
  c: ContainerOptions = {},
  opts: { replicas?: number; dependsOn?: readonly string[] } = {},
): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
  namespace: ${namespace}${annotations(opts.dependsOn)}
spec:
  replicas: ${opts.replicas ?? 1}
  selector:
    matchLabels: {app: ${name}}
  template:
    metadata:
      labels: {app: ${name}}
    spec:
${indent(podSpec(c), 6)}
`;
}

/** A Job `name` running `script` once (`backoffLimit: 0`: the first failure fails the Job). */
export function job(namespace: string, name: string, script: string): string {
  return `apiVersion: batch/v1
kind: Job
metadata:
  name: ${name}
  namespace: ${namespace}
spec:
  backoffLimit: 0
  template:
    spec:
${indent(podSpec(shell(script), 'Never'), 6)}
`;
}

/** A ConfigMap `name` with one key. */
export function configMap(
  namespace: string,
  name: string,
  opts: { value?: string; dependsOn?: readonly string[] } = {},
): string {
  return `apiVersion: v1
kind: ConfigMap
metadata:
  name: ${name}
  namespace: ${namespace}${annotations(opts.dependsOn)}
data:
  value: ${flow(opts.value ?? name)}
`;
}

/** A depends-on reference in cli-utils' format: `<group>/namespaces/<ns>/<Kind>/<name>`. */
export function ref(group: string, namespace: string, kind: string, name: string): string {
  return `${group}/namespaces/${namespace}/${kind}/${name}`;
}

/** Names of the test's custom resource type. */
export interface WidgetType {
  group: string;
  version: string;
  kind: string;
  plural: string;
}

/** A namespaced CRD with a status subresource, so the controller's conditions are not the agent's fields. */
export function widgetCrd(t: WidgetType): string {
  return `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ${t.plural}.${t.group}
spec:
  group: ${t.group}
  scope: Namespaced
  names: {kind: ${t.kind}, plural: ${t.plural}, singular: ${t.kind.toLowerCase()}, listKind: ${t.kind}List}
  versions:
  - name: ${t.version}
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
`;
}

/** One custom resource of the test's type; `size` changes its spec (and so its generation). */
export function widget(t: WidgetType, namespace: string, name: string, size: number): string {
  return `apiVersion: ${t.group}/${t.version}
kind: ${t.kind}
metadata:
  name: ${name}
  namespace: ${namespace}
spec:
  size: ${size}
`;
}

/** The agent's config.yaml as e2e/harness/stack.ts writes it, with `reconcile_timeout` in GitLab's seconds. */
export function agentConfig(project: string, namespace: string, reconcileTimeout: string): string {
  return `gitops:
  manifest_projects:
  - id: ${project}
    paths:
    - glob: '/**/*.yaml'
    default_namespace: ${namespace}
    reconcile_timeout: ${reconcileTimeout}
`;
}
