// The real node (e2e/harness/node.ts) in jest's `node` project: pods from the offline images really
// run and serve, the apiserver reaches the kubelet (logs), and a node whose owner dies by SIGKILL
// leaves nothing on the host: no process, mount, cgroup, bridge, shim socket, CNI cache entry or
// kubelet link. The SIGKILL case runs `npm run cluster -- --node` from dist/ (npm test builds it)
// as a second node beside the project's own, so it also shows two nodes side by side: the
// project's node still runs pods after the other one's cleanup.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../harness/controlplane.js';
import { freshNamespace, testKubeConfig, waitFor, type TestNamespace } from '../harness/kube.js';
import { cgroupMounts, NODE_REGISTRY, testNode } from '../harness/node.js';

const NGINX_POD = (name: string): V1Pod => ({
  metadata: { name, labels: { app: 'nginx' } },
  spec: {
    containers: [
      {
        name: 'nginx',
        image: 'nginx:1.27',
        ports: [{ containerPort: 80 }],
        readinessProbe: { httpGet: { path: '/', port: 80 }, periodSeconds: 1 },
      },
    ],
    terminationGracePeriodSeconds: 1,
  },
});

function isReady(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.once('timeout', () => req.destroy(new Error(`${url}: timed out`)));
    req.once('error', reject);
  });
}

/** Creates the pod (retrying while the namespace's default ServiceAccount is not there yet). */
async function createPod(core: CoreV1Api, namespace: string, pod: V1Pod): Promise<void> {
  await waitFor(
    async () => (await core.createNamespacedPod({ namespace, body: pod }), true),
    10_000,
    `pod ${namespace}/${pod.metadata?.name} to be created`,
    100,
  );
}

async function podReady(core: CoreV1Api, namespace: string, name: string, timeoutMs = 60_000): Promise<V1Pod> {
  return waitFor(
    async () => {
      const pod = await core.readNamespacedPod({ namespace, name });
      return isReady(pod) ? pod : undefined;
    },
    timeoutMs,
    `pod ${namespace}/${name} Ready`,
    100,
  );
}

describe('the test node', () => {
  let kc: KubeConfig;
  let core: CoreV1Api;
  let ns: TestNamespace;

  beforeAll(async () => {
    kc = testKubeConfig();
    core = kc.makeApiClient(CoreV1Api);
    ns = await freshNamespace('node');
  });
  afterAll(async () => {
    await ns?.delete();
  });

  it("is Ready, and runs the seed's image nginx:1.27 (the real nginx) without a registry", async () => {
    const node = await core.readNode({ name: testNode().name });
    expect(node.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');

    const t0 = Date.now();
    await createPod(core, ns.name, NGINX_POD('web'));
    const pod = await podReady(core, ns.name, 'web');
    process.stderr.write(`[node] pod Ready ${Date.now() - t0} ms after create\n`);
    expect(pod.status?.containerStatuses?.[0]?.imageID).toMatch(/^(docker\.io\/library\/nginx@)?sha256:/);

    // Host → pod IP over the bridge: the welcome page, from nginx itself.
    const answer = await get(`http://${pod.status?.podIP}/`);
    expect(answer.status).toBe(200);
    expect(answer.body).toContain('Welcome to nginx!');
    // apiserver → kubelet: the container's log holds that request.
    const log = await waitFor(
      async () => {
        const text = await core.readNamespacedPodLog({ namespace: ns.name, name: 'web' });
        return text.includes('"GET / HTTP/1.1" 200') ? text : undefined;
      },
      10_000,
      'the access log line',
    );
    expect(log).toMatch(/nginx\/1\.\d+|GET \/ HTTP\/1\.1/);
  });

  it('runs an image imported by the test (testNode().importImage)', async () => {
    const ref = `localhost/gitops/test-sleeper:${Date.now()}`;
    await testNode().importImage({
      ref,
      entries: [{ kind: 'copy', path: '/bin/busybox', from: '/bin/busybox', mode: 0o755 }],
      config: { Entrypoint: ['/bin/busybox', 'sh', '-c', 'echo imported-image-runs; exec /bin/busybox sleep 3600'] },
    });
    await createPod(core, ns.name, {
      metadata: { name: 'imported' },
      spec: { containers: [{ name: 'c', image: ref, imagePullPolicy: 'Never' }], terminationGracePeriodSeconds: 0 },
    });
    await waitFor(
      async () =>
        (await core.readNamespacedPodLog({ namespace: ns.name, name: 'imported' })).includes('imported-image-runs'),
      30_000,
      'the imported image to run',
    );
  });
});

/** Everything on the host that names the node's folder or id; empty when the node is gone. */
async function traces(node: {
  dir: string;
  cpDir: string;
  id: string;
  bridge: string;
  taskIds: string[];
}): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc').catch((): string[] => [])) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(node.dir) || cmdline.includes(node.cpDir))
      found.push(`process ${pid}: ${cmdline.replaceAll('\0', ' ').slice(0, 160)}`);
  }
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  for (const line of mountinfo.split('\n'))
    if (line.split(' ')[4]?.startsWith(node.dir)) found.push(`mount ${line.split(' ')[4]}`);
  for (const m of cgroupMounts(mountinfo))
    if (existsSync(join(m, `gitops-${node.id}`))) found.push(`cgroup ${join(m, `gitops-${node.id}`)}`);
  if (existsSync(`/sys/class/net/${node.bridge}`)) found.push(`bridge ${node.bridge}`);
  for (const l of await readdir('/var/log/containers').catch((): string[] => [])) {
    const target = await readlink(join('/var/log/containers', l)).catch(() => '');
    if (target.startsWith(node.dir)) found.push(`link /var/log/containers/${l}`);
  }
  for (const r of await readdir('/var/lib/cni/results').catch((): string[] => [])) {
    if (r.startsWith(`gitops-${node.id}-`) || node.taskIds.some((id) => r.includes(id)))
      found.push(`CNI result /var/lib/cni/results/${r}`);
  }
  if (existsSync(join(NODE_REGISTRY, 'nodes', node.id)))
    found.push(`registry entry ${join(NODE_REGISTRY, 'nodes', node.id)}`);
  for (const d of [node.dir, node.cpDir]) if (existsSync(d)) found.push(`folder ${d}`);
  return found;
}

describe('a node whose owner is killed with SIGKILL', () => {
  let owner: ChildProcess | undefined;
  let scratch: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'gitops-node-kill-'));
  });
  afterAll(async () => {
    owner?.kill('SIGKILL');
    await rm(scratch, { recursive: true, force: true });
  });

  it('leaves nothing behind: the watchdogs remove processes, mounts, cgroups, the bridge and the stray paths', async () => {
    const kubeconfig = join(scratch, 'kubeconfig');
    owner = spawn(
      process.execPath,
      [join(repoRoot(), 'dist', 'e2e', 'cli', 'cluster.js'), '--node', '--kubeconfig', kubeconfig],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    owner.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
    owner.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
    const started = await waitFor(
      () => {
        if (owner?.exitCode !== null)
          throw new Error(`npm run cluster -- --node exited ${String(owner?.exitCode)}:\n${err}`);
        const dir = /folder (\S+)/.exec(out)?.[1];
        const ids = /bridge (gitops([0-9a-f]+)),/.exec(out);
        const cpDir = /logs:\s+(\S+)\/\*\.log/.exec(out)?.[1];
        return dir && ids && cpDir && existsSync(kubeconfig) ? { dir, bridge: ids[1], id: ids[2], cpDir } : undefined;
      },
      120_000,
      'npm run cluster -- --node to print its node',
      100,
    ).catch((e: Error) => {
      throw new Error(`${e.message}\nstdout:\n${out}\nstderr:\n${err}`);
    });

    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    // A pod with every kind of mount: overlay rootfs, shm, netns, the projected token's tmpfs.
    await createPod(core, 'default', NGINX_POD('doomed'));
    await podReady(core, 'default', 'doomed');
    const taskIds = await readdir(join(started.dir, 'containerd', 'state', 'io.containerd.runtime.v2.task', 'k8s.io'));
    const node = { ...started, taskIds };
    const before = await traces(node);
    // The shims' sockets: /run/containerd/s/<sha256 of "<containerd address>/<namespace>/<task id>">.
    const present = await readdir('/run/containerd/s');
    const shimSockets = taskIds
      .map((id) =>
        createHash('sha256')
          .update(`${join(node.dir, 'containerd.sock')}/k8s.io/${id}`)
          .digest('hex'),
      )
      .filter((h) => present.includes(h));
    expect(shimSockets.length).toBeGreaterThan(0);
    // The check can fail: while the node runs, all of these are there.
    for (const kind of ['process', 'mount', 'cgroup', 'bridge', 'link', 'CNI result', 'registry entry', 'folder']) {
      expect(before.some((t) => t.startsWith(kind))).toBe(true);
    }
    expect(before.some((t) => t.includes('/volumes/kubernetes.io~projected/'))).toBe(true);

    const t0 = Date.now();
    owner.kill('SIGKILL');
    await waitFor(
      async () => (await traces(node)).length === 0,
      60_000,
      'the watchdogs to remove every trace',
      200,
    ).catch(async (e: Error) => {
      throw new Error(`${e.message}; left:\n  ${(await traces(node)).join('\n  ')}`);
    });
    process.stderr.write(`[node] after SIGKILL of its owner, every trace gone in ${Date.now() - t0} ms\n`);
    const shimSocketsAfter: string[] = await readdir('/run/containerd/s').catch(() => []);
    expect(shimSockets.filter((s) => shimSocketsAfter.includes(s))).toEqual([]);

    // The project's own node ran beside it all along and is untouched by that cleanup.
    const ours = testKubeConfig().makeApiClient(CoreV1Api);
    const mine = await ours.readNode({ name: testNode().name });
    expect(mine.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    const ns = await freshNamespace('node-after-kill');
    try {
      await createPod(ours, ns.name, NGINX_POD('survivor'));
      const pod = await podReady(ours, ns.name, 'survivor');
      expect((await get(`http://${pod.status?.podIP}/`)).status).toBe(200);
    } finally {
      await ns.delete();
    }
  });
});
