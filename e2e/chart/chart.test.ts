/**
 * charts/gitops-agent against manifests/agent, with the real tools: `helm` and `kustomize` as
 * scripts/build-helm.sh builds them (cached under ~/.cache/gitops; CI builds them before the
 * tests), and the real API server of the test control plane.
 *
 * - `helm lint` passes.
 * - A default `helm template` is object for object what `kustomize build manifests/agent` makes:
 *   same apiVersion, kind, namespace and name, and the whole object equal once both are parsed
 *   as the API server reads YAML (1.1: `0440` is octal). No field is excluded: the chart adds no
 *   labels or annotations of its own, and names the server URL ConfigMap with kustomize's hash.
 * - Each variant changes exactly what it says (a list of changed paths, compared whole), and
 *   cluster-admin and a changed server URL and image equal their kustomize counterparts.
 * - Every object of the default and variant renders is accepted by the API server in a
 *   server-side dry run, and the pod template is admitted under Pod Security "restricted".
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { generateToken } from '../../src/protocol/token.js';
import { kubeRequest, testKubeConfig, waitForGone } from '../harness/kube.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHART = path.join(ROOT, 'charts', 'gitops-agent');
const AGENT_KUSTOMIZATION = path.join(ROOT, 'manifests', 'agent');
/** The documented release name: with it every name is manifests/agent's. */
const RELEASE = 'gitops-agent';

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion; a non-zero exit is returned, not thrown. */
function run(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd: ROOT, env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') reject(err);
      else resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
  });
}

/** The path of `helm` or `kustomize`, built (or found cached) exactly as CI does. */
async function tool(name: 'helm' | 'kustomize'): Promise<string> {
  const r = await run('bash', [path.join(ROOT, 'scripts', 'build-helm.sh'), name]);
  if (r.code !== 0) throw new Error(`scripts/build-helm.sh ${name} exited ${r.code}:\n${r.stderr.slice(-4000)}`);
  return r.stdout.trim();
}

/** Parses a multi-document render as the API server reads YAML (1.1). */
function parseObjects(text: string, what: string): KubeObject[] {
  const out: KubeObject[] = [];
  for (const doc of parseAllDocuments(text, { version: '1.1' })) {
    if (doc.errors.length > 0) throw new Error(`${what}: ${doc.errors[0]!.message}`);
    const obj = doc.toJS() as KubeObject | null;
    if (obj) out.push(obj);
  }
  return out;
}

let helm = '';
let kustomize = '';

async function helmTemplate(args: string[] = []): Promise<KubeObject[]> {
  const r = await run(helm, ['template', RELEASE, CHART, ...args]);
  if (r.code !== 0) throw new Error(`helm template ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return parseObjects(r.stdout, `helm template ${args.join(' ')}`);
}

/** `helm template` that must fail: its error text. */
async function helmTemplateError(args: string[]): Promise<string> {
  const r = await run(helm, ['template', RELEASE, CHART, ...args]);
  if (r.code === 0) throw new Error(`helm template ${args.join(' ')} succeeded; expected a refusal`);
  return r.stderr;
}

async function kustomizeBuild(dir: string): Promise<KubeObject[]> {
  const r = await run(kustomize, ['build', dir]);
  if (r.code !== 0) throw new Error(`kustomize build ${dir} exited ${r.code}: ${r.stderr}`);
  return parseObjects(r.stdout, `kustomize build ${dir}`);
}

/** An overlay of manifests/agent in a temporary folder (kustomize wants a relative base path). */
async function kustomizeOverlay(body: string): Promise<KubeObject[]> {
  const dir = await mkdtemp(path.join(tmpdir(), 'gitops-chart-overlay-'));
  try {
    await writeFile(
      path.join(dir, 'kustomization.yaml'),
      `resources: [${JSON.stringify(path.relative(dir, AGENT_KUSTOMIZATION))}]\n${body}`,
    );
    return await kustomizeBuild(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function key(o: KubeObject): string {
  return `${o.apiVersion} ${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;
}

function byKey(objects: KubeObject[]): Map<string, KubeObject> {
  const map = new Map<string, KubeObject>();
  for (const o of objects) {
    if (map.has(key(o))) throw new Error(`${key(o)} is rendered twice`);
    map.set(key(o), o);
  }
  return map;
}

function find(objects: KubeObject[], kind: string, name?: string): KubeObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!;
}

/** Object for object: the same keys, and each object equal as a whole. */
function expectSameObjects(actual: KubeObject[], expected: KubeObject[]): void {
  const a = byKey(actual);
  const e = byKey(expected);
  expect([...a.keys()].sort()).toEqual([...e.keys()].sort());
  for (const [k, obj] of e) expect({ [k]: a.get(k) }).toStrictEqual({ [k]: obj });
}

/** JSON-pointer paths where two values differ (arrays by index). */
function diffPaths(a: unknown, b: unknown, at = ''): string[] {
  if (
    typeof a !== 'object' ||
    typeof b !== 'object' ||
    a === null ||
    b === null ||
    Array.isArray(a) !== Array.isArray(b)
  ) {
    return Object.is(a, b) ? [] : [at || '/'];
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].flatMap((k) =>
    diffPaths((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${at}/${k}`),
  );
}

/** What a variant changes against a base render: objects added (+), removed (-), and changed paths, sorted. */
function changes(base: KubeObject[], variant: KubeObject[]): string[] {
  const b = byKey(base);
  const v = byKey(variant);
  const out: string[] = [];
  for (const k of v.keys()) if (!b.has(k)) out.push(`+ ${k}`);
  for (const [k, obj] of b) {
    const other = v.get(k);
    if (!other) out.push(`- ${k}`);
    else out.push(...diffPaths(obj, other).map((p) => `${k} ${p}`));
  }
  return out.sort();
}

const DEPLOYMENT = 'apps/v1 Deployment gitops-agent/gitops-agent';

beforeAll(async () => {
  helm = await tool('helm');
  kustomize = await tool('kustomize');
}, 15 * 60_000);

describe('charts/gitops-agent', () => {
  test('helm lint passes', async () => {
    const r = await run(helm, ['lint', CHART]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(r.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
  });

  test('a default render is object for object kustomize build manifests/agent', async () => {
    const rendered = await helmTemplate();
    const kustomized = await kustomizeBuild(AGENT_KUSTOMIZATION);
    // Guard against a vacuous comparison: the eight objects manifests/README.md lists.
    expect(kustomized.map((o) => o.kind).sort()).toEqual([
      'ClusterRole',
      'ClusterRoleBinding',
      'ConfigMap',
      'Deployment',
      'Namespace',
      'Role',
      'RoleBinding',
      'ServiceAccount',
    ]);
    expectSameObjects(rendered, kustomized);
  });

  test('rbac.mode=cluster-admin is object for object manifests/agent/variants/cluster-admin', async () => {
    const rendered = await helmTemplate(['--set', 'rbac.mode=cluster-admin']);
    expectSameObjects(rendered, await kustomizeBuild(path.join(AGENT_KUSTOMIZATION, 'variants', 'cluster-admin')));
    expect(find(rendered, 'ClusterRoleBinding').roleRef).toEqual({
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: 'cluster-admin',
    });
  });

  test('a server URL and image are what the overlay in manifests/README.md makes, down to the ConfigMap hash', async () => {
    // & and < are escaped by Go's JSON encoder in both hashes; a mismatch would show here.
    const url = 'wss://gitops.example.com:9443/api/v1/agent/connect?a=1&b=<2>';
    const rendered = await helmTemplate([
      '--set-string',
      `config.serverUrl=${url}`,
      '--set',
      'image.repository=registry.example.com/gitops',
      '--set',
      'image.tag=1.2.3',
    ]);
    const overlay = await kustomizeOverlay(
      `configMapGenerator:
  - name: gitops-agent-config
    namespace: gitops-agent
    behavior: replace
    literals: [${JSON.stringify(`server-url=${url}`)}]
images:
  - name: gitops
    newName: registry.example.com/gitops
    newTag: 1.2.3
`,
    );
    expectSameObjects(rendered, overlay);
    expect(find(rendered, 'ConfigMap').metadata.name).not.toBe(find(await helmTemplate(), 'ConfigMap').metadata.name);
  });

  test('replicas=2 changes the Deployment replicas only (leader election is already on)', async () => {
    const base = await helmTemplate();
    const variant = await helmTemplate(['--set', 'replicas=2']);
    expect(changes(base, variant)).toEqual([`${DEPLOYMENT} /spec/replicas`]);
    expect((find(variant, 'Deployment').spec as { replicas: number }).replicas).toBe(2);
    expect(find(variant, 'Role').rules).toEqual(
      expect.arrayContaining([expect.objectContaining({ apiGroups: ['coordination.k8s.io'], resources: ['leases'] })]),
    );
  });

  test('config.secretName mounts that Secret and creates none', async () => {
    const base = await helmTemplate();
    const variant = await helmTemplate(['--set', 'config.secretName=agent1-token']);
    expect(changes(base, variant)).toEqual([`${DEPLOYMENT} /spec/template/spec/volumes/0/secret/secretName`]);
    const volumes = (
      find(variant, 'Deployment').spec as {
        template: { spec: { volumes: { name: string; secret?: { secretName: string } }[] } };
      }
    ).template.spec.volumes;
    expect(volumes[0]).toEqual({ name: 'token', secret: { secretName: 'agent1-token', defaultMode: 0o440 } });
    expect(variant.some((o) => o.kind === 'Secret')).toBe(false);
  });

  test('config.token and config.caCert create the Secret and ConfigMap the pod mounts, and roll it when they change', async () => {
    const token = generateToken().token;
    const other = generateToken().token;
    const dir = await mkdtemp(path.join(tmpdir(), 'gitops-chart-values-'));
    try {
      const tokenFile = path.join(dir, 'agent1.token');
      const caFile = path.join(dir, 'server-ca.crt');
      await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
      await writeFile(caFile, await clusterCaPem());
      const base = await helmTemplate();
      const variant = await helmTemplate([
        '--set-file',
        `config.token=${tokenFile}`,
        '--set-file',
        `config.caCert=${caFile}`,
      ]);
      expect(changes(base, variant)).toEqual([
        '+ v1 ConfigMap gitops-agent/gitops-agent-ca',
        '+ v1 Secret gitops-agent/gitops-agent-token',
        `${DEPLOYMENT} /spec/template/metadata/annotations`,
      ]);
      const secret = find(variant, 'Secret', 'gitops-agent-token');
      expect(secret.type).toBe('Opaque');
      // Trimmed: --set-file keeps the file's newline.
      expect(secret.data).toEqual({ token: Buffer.from(token).toString('base64') });
      expect(find(variant, 'ConfigMap', 'gitops-agent-ca').data).toEqual({
        'ca.crt': `${(await readFile(caFile, 'utf8')).trim()}\n`,
      });
      const annotations = find(variant, 'Deployment').spec as {
        template: { metadata: { annotations: Record<string, string> } };
      };
      expect(Object.keys(annotations.template.metadata.annotations).sort()).toEqual(['checksum/ca', 'checksum/token']);
      expect(JSON.stringify(variant.filter((o) => o.kind !== 'Secret'))).not.toContain(token);

      await writeFile(tokenFile, other);
      const rotated = await helmTemplate([
        '--set-file',
        `config.token=${tokenFile}`,
        '--set-file',
        `config.caCert=${caFile}`,
      ]);
      expect(changes(variant, rotated)).toEqual([
        `${DEPLOYMENT} /spec/template/metadata/annotations/checksum/token`,
        'v1 Secret gitops-agent/gitops-agent-token /data/token',
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('rbac.create=false leaves out every RBAC object and nothing else', async () => {
    expect(changes(await helmTemplate(), await helmTemplate(['--set', 'rbac.create=false']))).toEqual([
      '- rbac.authorization.k8s.io/v1 ClusterRole gitops-agent',
      '- rbac.authorization.k8s.io/v1 ClusterRoleBinding gitops-agent',
      '- rbac.authorization.k8s.io/v1 Role gitops-agent/gitops-agent-leader-election',
      '- rbac.authorization.k8s.io/v1 RoleBinding gitops-agent/gitops-agent-leader-election',
    ]);
  });

  test('leaderElection.enabled=false drops the Lease Role and passes --no-leader-elect', async () => {
    const variant = await helmTemplate(['--set', 'leaderElection.enabled=false']);
    expect(changes(await helmTemplate(), variant)).toEqual([
      '- rbac.authorization.k8s.io/v1 Role gitops-agent/gitops-agent-leader-election',
      '- rbac.authorization.k8s.io/v1 RoleBinding gitops-agent/gitops-agent-leader-election',
      `${DEPLOYMENT} /spec/template/spec/containers/0/args/7`,
    ]);
    expect(
      (
        find(variant, 'Deployment').spec as { template: { spec: { containers: { args: string[] }[] } } }
      ).template.spec.containers[0]!.args.at(-1),
    ).toBe('--no-leader-elect');
  });

  test('rbac.extraRules are added to the least-privilege ClusterRole', async () => {
    const rule = {
      apiGroups: ['cert-manager.io'],
      resources: ['certificates', 'issuers'],
      verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
    };
    const base = await helmTemplate();
    const variant = await helmTemplate(['--set-json', `rbac.extraRules=${JSON.stringify([rule])}`]);
    const rules = find(base, 'ClusterRole').rules as unknown[];
    expect(changes(base, variant)).toEqual([
      `rbac.authorization.k8s.io/v1 ClusterRole gitops-agent /rules/${rules.length}`,
    ]);
    expect(find(variant, 'ClusterRole').rules).toEqual([...rules, rule]);
  });

  test('namespace.create=false puts everything in the release namespace and creates none', async () => {
    const rendered = await helmTemplate(['--namespace', 'agents', '--set', 'namespace.create=false']);
    expect(rendered.some((o) => o.kind === 'Namespace')).toBe(false);
    expect(rendered.filter((o) => !o.kind.startsWith('Cluster')).map((o) => o.metadata.namespace)).toEqual(
      Array(5).fill('agents'),
    );
    expect((find(rendered, 'ClusterRoleBinding').subjects as { namespace: string }[])[0]!.namespace).toBe('agents');
  });

  test.each([
    {
      name: 'release in the namespace the chart creates',
      args: ['--namespace', 'gitops-agent'],
      message: 'Install without --namespace',
    },
    // The GitLab habit, -n X --create-namespace: without this check everything would silently land
    // in gitops-agent, not X.
    {
      name: 'release in another namespace than the one the chart creates',
      args: ['--namespace', 'agents'],
      message: '--namespace agents --create-namespace --set namespace.create=false',
    },
    {
      name: 'token and existing Secret',
      args: ['--set', 'config.secretName=s', '--set', 'config.token=TOKEN'],
      message: 'config.token and config.secretName are both set',
    },
    {
      name: 'not a token',
      args: ['--set', 'config.token=gitops_agent_TOKEN'],
      message: 'config.token is not an agent token',
    },
    {
      name: 'credentials in the URL',
      args: ['--set', 'config.serverUrl=wss://user:TOKEN@gitops.example.com/api/v1/agent/connect'],
      message: 'config.serverUrl must be',
    },
    {
      name: 'an https URL',
      args: ['--set', 'config.serverUrl=https://gitops.example.com/api/v1/agent/connect'],
      message: 'config.serverUrl must be',
    },
    {
      name: 'caCert that is no PEM',
      args: ['--set', 'config.caCert=TOKEN'],
      message: 'config.caCert holds no PEM certificate',
    },
    {
      name: 'unknown RBAC mode',
      args: ['--set', 'rbac.mode=admin'],
      message: "value must be one of 'least-privilege', 'cluster-admin'",
    },
    { name: 'a misspelt value', args: ['--set', 'config.tokn=x'], message: "additional properties 'tokn' not allowed" },
    {
      name: 'two replicas without leader election',
      args: ['--set', 'replicas=2', '--set', 'leaderElection.enabled=false'],
      message: 'replicas would apply at the same time',
    },
  ])('refuses $name, saying what to change and never echoing a secret', async ({ args, message }) => {
    const stderr = await helmTemplateError(args);
    expect(stderr).toContain(message);
    expect(stderr).not.toContain('TOKEN');
  });
});

/** PEM of the test control plane's CA: a real certificate for config.caCert. */
async function clusterCaPem(): Promise<string> {
  const cluster = testKubeConfig().getCurrentCluster();
  if (cluster?.caData) return Buffer.from(cluster.caData, 'base64').toString('utf8');
  if (cluster?.caFile) return readFile(cluster.caFile, 'utf8');
  throw new Error('the test kubeconfig names no CA');
}

const FIELD_MANAGER = 'gitops-chart-test';

/** API path of one object (every kind the chart renders has the plural kind + "s"). */
function objectPath(o: KubeObject): string {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  const base = group ? `/apis/${group}/${version}` : `/api/${version}`;
  const ns = o.metadata.namespace ? `/namespaces/${o.metadata.namespace}` : '';
  return `${base}${ns}/${o.kind.toLowerCase()}s/${o.metadata.name}`;
}

/** Server-side apply of one object; dryRun: validated, defaulted and admitted, never stored. */
async function serverSideApply(o: KubeObject, dryRun: boolean): Promise<{ status: number; message?: string }> {
  const query = `?fieldManager=${FIELD_MANAGER}&force=true${dryRun ? '&dryRun=All' : ''}`;
  const r = await kubeRequest(testKubeConfig(), 'PATCH', `${objectPath(o)}${query}`, o, 'application/apply-patch+yaml');
  return { status: r.status, message: (r.body as { message?: string } | undefined)?.message };
}

describe('charts/gitops-agent on the real API server', () => {
  // The render in a namespace of its own, so the dry run cannot disturb other tests' agents; the
  // test checks that this moves the default render and changes nothing else.
  const namespace = `gitops-agent-chart-${randomBytes(4).toString('hex')}`;
  const created: KubeObject[] = [];

  afterAll(async () => {
    for (const o of created.reverse()) {
      await kubeRequest(testKubeConfig(), 'DELETE', objectPath(o));
      await waitForGone(testKubeConfig(), objectPath(o), 60_000).catch(() => undefined);
    }
  }, 90_000);

  /** A render moved to `namespace`, checked to differ from the default one only there. */
  async function renderInto(args: string[] = []): Promise<KubeObject[]> {
    const moved = await helmTemplate(['--set', `namespace.name=${namespace}`, ...args]);
    const restored = JSON.parse(JSON.stringify(moved).replaceAll(`"${namespace}"`, '"gitops-agent"')) as KubeObject[];
    expectSameObjects(restored, await helmTemplate(args));
    return moved;
  }

  test('every object of the default render and its variants is accepted by a server-side dry run', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'gitops-chart-values-'));
    const tokenFile = path.join(dir, 'agent1.token');
    const caFile = path.join(dir, 'server-ca.crt');
    await writeFile(tokenFile, generateToken().token, { mode: 0o600 });
    await writeFile(caFile, await clusterCaPem());
    const renders = {
      default: await renderInto(),
      'cluster-admin': await renderInto(['--set', 'rbac.mode=cluster-admin']),
      'token, CA, 2 replicas': await renderInto([
        '--set-file',
        `config.token=${tokenFile}`,
        '--set-file',
        `config.caCert=${caFile}`,
        '--set',
        'replicas=2',
      ]),
    };
    await rm(dir, { recursive: true, force: true });
    // A dry run does not create the Namespace the other objects need; create it for real first
    // (from the render, so its Pod Security label is the chart's), then dry-run everything.
    const ns = find(renders.default, 'Namespace');
    const first = await serverSideApply(ns, false);
    expect(first).toEqual({ status: 201, message: undefined });
    created.push(ns);

    const refused: string[] = [];
    let accepted = 0;
    for (const [name, objects] of Object.entries(renders)) {
      for (const o of objects) {
        const r = await serverSideApply(o, true);
        if (r.status === 200 || r.status === 201) accepted++;
        else refused.push(`${name}: ${key(o)}: ${r.status} ${r.message ?? ''}`);
      }
    }
    expect(refused).toEqual([]);
    expect(accepted).toBe(8 + 7 + 10);
  });

  test('the pod template is admitted under the namespace\'s Pod Security "restricted", and the check bites', async () => {
    if (!created.some((o) => o.kind === 'Namespace'))
      throw new Error('the dry-run test above did not create the namespace');
    const rendered = await renderInto();
    // The ServiceAccount admission plugin refuses a pod whose ServiceAccount does not exist, so
    // this one is created for real (it goes with the namespace).
    const account = find(rendered, 'ServiceAccount');
    expect((await serverSideApply(account, false)).status).toBe(201);
    created.push(account);
    const deployment = find(rendered, 'Deployment');
    const template = (
      deployment.spec as { template: { metadata: Record<string, unknown>; spec: Record<string, unknown> } }
    ).template;
    const pod = (spec: Record<string, unknown>): KubeObject => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'gitops-agent-pss', namespace, labels: template.metadata.labels as Record<string, string> },
      spec,
    });
    expect(await serverSideApply(pod(template.spec), true)).toEqual({ status: 201, message: undefined });
    // The same pod without its pod security context is refused: the namespace really enforces.
    const loose = { ...template.spec };
    delete loose.securityContext;
    const refused = await serverSideApply(pod(loose), true);
    expect(refused.status).toBe(403);
    expect(refused.message).toContain('violates PodSecurity "restricted');
  });
});
