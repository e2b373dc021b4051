/**
 * A real node next to the test control plane: containerd + runc, the CNI bridge and host-local
 * plugins, kubelet and kube-scheduler (built by `scripts/build-controlplane.sh --node`), so pods
 * really run. The recipe and its pitfalls are in shared/TOOLCHAIN.md ("A real node").
 *
 * Everything a run owns is named after its id, so two nodes (two test runs, or a test run and
 * `npm run cluster -- --node`) run side by side on one machine: the folder (containerd's config,
 * root, state and socket, the kubelet's root and logs, the CNI config and IPAM data), the bridge
 * `gitops<id>`, a free 10.244.X.0/24 for pods, free kubelet ports and the cgroup parent
 * `/gitops-<id>` in every cgroup hierarchy.
 *
 * What the processes leave outside plain files (mounts, cgroups, the bridge, shim sockets, the
 * kubelet's fixed paths) is removed by one generated bash script, `<dir>/cleanup.sh`
 * ({@link nodeCleanupScript}), which the ProcessGroup runs on an orderly stop, from its exit
 * handler and from its watchdog after a SIGKILL. Only what this run created is removed.
 *
 * `startNode` resolves once the Node is Ready and the images are imported; {@link checkNodeHost}
 * names what a machine lacks (package, capability, cgroup setting) instead of skipping.
 */
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { stringify as toYaml } from 'yaml';
import { freePorts, repoRoot } from './controlplane.js';
import { nginxImage, pauseImage, PAUSE_IMAGE, writeDockerArchive, type ImageSpec } from './images.js';
import { ProcessGroup, type ManagedProcess } from './processes.js';

const run = promisify(execFile);

/**
 * Where the kubelet, the shims and libcni (its result cache) write whatever the configuration says
 * (TOOLCHAIN.md), parents first.
 */
export const HOST_FIXED_DIRS = [
  '/var/lib/kubelet',
  '/var/lib/kubelet/device-plugins',
  '/var/log/containers',
  '/run/containerd',
  '/run/containerd/s',
  '/var/lib/cni',
  '/var/lib/cni/results',
];
/** Machine-wide registry of running test nodes, so the last one removes the shared fixed dirs. */
export const NODE_REGISTRY = '/run/gitops-node';

const CNI_BIN_DIR = '/usr/lib/cni';
const CONTAINERD_TIMEOUT_MS = 30_000;
const NODE_READY_TIMEOUT_MS = 90_000;

/** Per-run names; see the module comment. */
export interface NodeIdentity {
  id: string;
  bridge: string;
  /** `10.244.X.0/24` */
  subnet: string;
  /** `/gitops-<id>`, the kubelet's cgroupRoot. */
  cgroupRoot: string;
}

/** What a started node tells its user. */
export interface TestNode {
  /** The Node object's name (this machine's hostname, which resolves to 127.0.0.1). */
  readonly name: string;
  readonly identity: NodeIdentity;
  /** The node's folder (containerd, kubelet, CNI, logs); deleted by `stop()`. */
  readonly dir: string;
  /** containerd's gRPC socket, for `ctr --address`. */
  readonly containerdAddress: string;
  /** Milliseconds from the call to `startNode` until each stage was ready. */
  readonly timings: { containerdMs: number; imagesMs: number; readyMs: number };
  /** Settles with the name of the first process that exited while the node was up. */
  readonly unexpectedExit: Promise<string>;
  /** Writes `spec` as a docker-archive and imports it into the node's containerd. */
  importImage(spec: ImageSpec): Promise<void>;
  /** Imports a docker-archive (or OCI) tarball into the node's containerd. */
  importArchive(path: string): Promise<void>;
  /** Stops everything and removes every trace (see the module comment); resolves with the ms taken. */
  stop(): Promise<number>;
}

export interface StartNodeOptions {
  /** The control plane's admin kubeconfig (the kubelet and scheduler use it: tests only). */
  kubeconfigPath: string;
  /** Folder with kubelet and kube-scheduler; built/found when absent. */
  binDir?: string;
  /** Images imported before `startNode` resolves, besides pause and nginx. */
  images?: ImageSpec[];
  log?: (line: string) => void;
  /** Install SIGINT/SIGTERM handlers that kill the processes (default true; see ProcessGroup). */
  handleSignals?: boolean;
}

/** The CNI network list: one bridge with host-local IPAM, no iptables rules (`ipMasq: false`). */
export function cniConfig(identity: NodeIdentity, ipamDir: string): object {
  const gateway = identity.subnet.replace(/\.0\/24$/, '.1');
  return {
    cniVersion: '1.0.0',
    name: `gitops-${identity.id}`,
    plugins: [
      {
        type: 'bridge',
        bridge: identity.bridge,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          dataDir: ipamDir,
          ranges: [[{ subnet: identity.subnet, gateway }]],
          routes: [{ dst: '0.0.0.0/0' }],
        },
      },
    ],
  };
}

/** containerd's config (version 2): everything under `dir`; see TOOLCHAIN.md for each setting. */
export function containerdConfig(dir: string): string {
  const q = JSON.stringify;
  return `version = 2
root = ${q(join(dir, 'containerd', 'root'))}
state = ${q(join(dir, 'containerd', 'state'))}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = ${q(join(dir, 'containerd.sock'))}
[ttrpc]
  address = ${q(join(dir, 'containerd.sock.ttrpc'))}
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = ${q(join(dir, 'containerd', 'opt'))}
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${q(PAUSE_IMAGE)}
  netns_mounts_under_state_dir = true
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails in runc create.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = ${q(join(dir, 'runc'))}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${q(CNI_BIN_DIR)}
    conf_dir = ${q(join(dir, 'cni', 'net.d'))}
`;
}

/** The KubeletConfiguration; see TOOLCHAIN.md for why each non-default setting is there. */
export function kubeletConfig(params: {
  dir: string;
  identity: NodeIdentity;
  port: number;
  healthzPort: number;
  cgroupV1: boolean;
}): object {
  return {
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    failCgroupV1: !params.cgroupV1,
    cgroupDriver: 'cgroupfs',
    cgroupRoot: params.identity.cgroupRoot,
    containerRuntimeEndpoint: `unix://${join(params.dir, 'containerd.sock')}`,
    address: '127.0.0.1',
    port: params.port,
    healthzBindAddress: '127.0.0.1',
    healthzPort: params.healthzPort,
    readOnlyPort: 0,
    authentication: { anonymous: { enabled: true }, webhook: { enabled: false } },
    authorization: { mode: 'AlwaysAllow' },
    failSwapOn: false,
    // Image GC would delete imported images, which can never be pulled back here.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: {
      'memory.available': '100Mi',
      'nodefs.available': '1%',
      'nodefs.inodesFree': '1%',
      'imagefs.available': '1%',
    },
    podLogsDir: join(params.dir, 'pod-logs'),
    registerNode: true,
    serializeImagePulls: false,
    shutdownGracePeriod: '0s',
    // Pods of a test run are torn down with the node; no reason to wait on a long sync loop.
    syncFrequency: '10s',
    nodeStatusUpdateFrequency: '4s',
  };
}

/**
 * The bash script that removes what a node leaves behind, in the safe order: SIGKILL every
 * process in the node's cgroups and every shim naming its socket (containerd and the kubelet are
 * stopped by the ProcessGroup before), unmount everything under the folder deepest first, rmdir
 * the cgroup trees, delete the bridge, remove the kubelet's stray files of this run, and — when no
 * other test node is running — the fixed dirs a test node created. Idempotent.
 */
export function nodeCleanupScript(params: { dir: string; identity: NodeIdentity; cgroupMounts: string[] }): string {
  const { dir, identity } = params;
  const sock = join(dir, 'containerd.sock');
  return `#!/usr/bin/env bash
# Generated by e2e/harness/node.ts: removes what the test node ${identity.id} left behind.
set -u
DIR=${JSON.stringify(dir)}
SOCK=${JSON.stringify(sock)}
CG_MOUNTS=(${params.cgroupMounts.map((m) => JSON.stringify(m)).join(' ')})
CG_NAME=${JSON.stringify(identity.cgroupRoot.replace(/^\//, ''))}
BRIDGE=${JSON.stringify(identity.bridge)}
REG=${JSON.stringify(NODE_REGISTRY)}
ID=${JSON.stringify(identity.id)}
fail=0

# 1. Processes: everything in our cgroups (the containers), then any shim or containerd of ours.
# The pattern is written so that grep's own command line does not match it.
SOCK_RE="$(printf '%s' "$SOCK" | sed 's/[.]/[.]/g')"
for round in 1 2 3 4 5 6 7 8 9 10; do
  files=()
  for m in "\${CG_MOUNTS[@]}"; do
    [ -d "$m/$CG_NAME" ] && while IFS= read -r f; do files+=("$f"); done < <(find "$m/$CG_NAME" -name cgroup.procs)
  done
  pids=""
  [ \${#files[@]} -gt 0 ] && pids=$(cat "\${files[@]}" 2>/dev/null | sort -u | tr '\n' ' ')
  for f in $(grep -lsE -- "$SOCK_RE" /proc/[0-9]*/cmdline 2>/dev/null); do
    p=\${f#/proc/}; p=\${p%/cmdline}
    [ "$p" != $$ ] && pids="$pids $p"
  done
  [ -z "\${pids// /}" ] && break
  kill -9 $pids 2>/dev/null
  sleep 0.1
done

# 2. Shim sockets: /run/containerd/s/<sha256 of "<address>/<namespace>/<id>">, for our task ids;
#    libcni's cached results: <network>-<sandbox id>-<interface>, ours by network name and id.
for nsdir in "$DIR"/containerd/state/io.containerd.runtime.v2.task/*; do
  [ -d "$nsdir" ] || continue
  ns=$(basename "$nsdir")
  for t in "$nsdir"/*; do
    [ -e "$t" ] || continue
    h=$(printf '%s' "$SOCK/$ns/$(basename "$t")" | sha256sum | cut -d' ' -f1)
    rm -f "/run/containerd/s/$h" "/var/lib/cni/results/cni-loopback-$(basename "$t")-lo"
  done
done
rm -f /var/lib/cni/results/gitops-"$ID"-*

# 3. Mounts under the folder, deepest first (overlay rootfs, shm, netns, tmpfs volumes, the
#    kubelet's bind mount of its root onto itself, possibly stacked): repeat until none is left.
for round in 1 2 3 4 5; do
  mps=$(awk -v d="$DIR" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  [ -z "$mps" ] && break
  for mp in $mps; do umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null; done
done
if awk -v d="$DIR" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
  echo "cleanup: mounts left under $DIR" >&2; fail=1
fi

# 4. Cgroups, deepest first, in every hierarchy.
for m in "\${CG_MOUNTS[@]}"; do
  [ -d "$m/$CG_NAME" ] || continue
  find "$m/$CG_NAME" -depth -type d -exec rmdir {} + 2>/dev/null
  [ -d "$m/$CG_NAME" ] && { echo "cleanup: cgroup $m/$CG_NAME left" >&2; fail=1; }
done

# 5. The bridge (the veths went with their network namespaces).
if [ -e "/sys/class/net/$BRIDGE" ]; then ip link delete "$BRIDGE" 2>/dev/null || { echo "cleanup: bridge $BRIDGE left" >&2; fail=1; }; fi

# 6. The kubelet's links into our pod logs, then the fixed dirs when no other test node runs.
for l in /var/log/containers/*; do
  [ -L "$l" ] || continue
  case "$(readlink "$l")" in "$DIR"/*) rm -f "$l" ;; esac
done
rm -f "$REG/nodes/$ID"
others=0
for m in "$REG"/nodes/*; do
  [ -f "$m" ] || continue
  if [ -d "$(cat "$m")" ]; then others=1; else rm -f "$m"; fi
done
if [ $others = 0 ] && [ -f "$REG/created" ]; then
  grep -qx /var/lib/kubelet/device-plugins "$REG/created" && rm -f /var/lib/kubelet/device-plugins/kubelet.sock
  for d in $(sort -ru "$REG/created"); do rmdir "$d" 2>/dev/null; done
  rm -f "$REG/created"; rmdir "$REG/nodes" "$REG" 2>/dev/null
fi

# 7. The folder itself, never crossing into a mount that survived.
rm -rf --one-file-system "$DIR"
exit $fail
`;
}

/** The device of the default route in `ip -o -4 route show default` output. */
export function defaultRouteDevice(routes: string): string | undefined {
  return /^default\s.*\bdev\s+(\S+)/m.exec(routes)?.[1];
}

/** First address in `ip -o -4 addr show dev X` output. */
export function firstAddress(addrs: string): string | undefined {
  return /\binet\s+(\d+\.\d+\.\d+\.\d+)\//.exec(addrs)?.[1];
}

/** A 10.244.X.0/24 that no address or route in `ipOutput` (addresses and routes) touches. */
export function pickSubnet(ipOutput: string, random: () => number = Math.random): string {
  const used = new Set([...ipOutput.matchAll(/\b10\.244\.(\d+)\./g)].map((m) => Number(m[1])));
  const free = Array.from({ length: 256 }, (_, i) => i).filter((i) => !used.has(i));
  if (free.length === 0)
    throw new Error('no free 10.244.X.0/24 for the test node: every one is in use on this machine');
  return `10.244.${free[Math.floor(random() * free.length)]}.0/24`;
}

/** Mount points of cgroup (v1 or v2) hierarchies in /proc/self/mountinfo text. */
export function cgroupMounts(mountinfo: string): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const fstype = post.split(' ')[0];
    if (fstype === 'cgroup' || fstype === 'cgroup2') out.push(pre.split(' ')[4]);
  }
  return out;
}

/** Effective capability bits from /proc/self/status (`CapEff:` hex). */
export function effectiveCaps(status: string): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;

/** What {@link missingForNode} judges, gathered by {@link checkNodeHost}. */
export interface NodeHostFacts {
  platform: string;
  uid: number | undefined;
  /** Commands found on PATH. */
  commands: string[];
  /** Paths that exist. */
  paths: string[];
  /** /proc/self/status text. */
  status: string;
  /** /proc/filesystems text. */
  filesystems: string;
  /** /proc/self/mountinfo text. */
  mountinfo: string;
}

const HOST_COMMANDS: Array<[string, string]> = [
  ['containerd', 'containerd'],
  ['ctr', 'containerd'],
  ['runc', 'runc'],
  ['ip', 'iproute2'],
  ['tar', 'tar'],
  ['ldd', 'libc-bin'],
];
const HOST_PATHS: Array<[string, string]> = [
  ...['bridge', 'host-local', 'loopback'].map((p): [string, string] => [
    join(CNI_BIN_DIR, p),
    "install Debian's containernetworking-plugins package",
  ]),
  ['/bin/busybox', "the pause image: install Debian's busybox-static package"],
  ['/usr/sbin/nginx', "the nginx:1.27 image: install Debian's nginx-light package"],
];

/**
 * What a machine lacks to run a node, one line each naming the package, capability or setting;
 * empty when it can. The node tests fail with these lines: they are never skipped.
 */
export function missingForNode(facts: NodeHostFacts): string[] {
  if (facts.platform !== 'linux') return [`a Linux host (this is ${facts.platform})`];
  const missing: string[] = [];
  if (facts.uid !== 0) missing.push('root: the node mounts, makes cgroups and network devices (run as root)');
  for (const [cmd, pkg] of HOST_COMMANDS)
    if (!facts.commands.includes(cmd)) missing.push(`${cmd}: install Debian's ${pkg} package`);
  for (const [path, why] of HOST_PATHS) if (!facts.paths.includes(path)) missing.push(`${path}: ${why}`);
  const caps = effectiveCaps(facts.status);
  if (!((caps >> CAP_SYS_ADMIN) & 1n))
    missing.push('capability CAP_SYS_ADMIN (mounts, namespaces): run as root on the host or in a privileged container');
  if (!((caps >> CAP_NET_ADMIN) & 1n))
    missing.push('capability CAP_NET_ADMIN (the CNI bridge): run as root on the host or in a privileged container');
  if (!/\toverlay$/m.test(facts.filesystems))
    missing.push("the overlay filesystem (modprobe overlay), for containerd's overlayfs snapshotter");
  const mounts = cgroupMounts(facts.mountinfo);
  const v2 = facts.mountinfo.split('\n').some((l) => / - cgroup2 /.test(l) && l.split(' ')[4] === '/sys/fs/cgroup');
  if (!v2 && !mounts.some((m) => m.endsWith('/memory'))) {
    missing.push(
      'a cgroup memory controller: mount the cgroup v1 memory hierarchy under /sys/fs/cgroup, or cgroup v2 at /sys/fs/cgroup',
    );
  }
  return missing;
}

/** Gathers this machine's {@link NodeHostFacts} and returns {@link missingForNode}'s findings. */
export async function checkNodeHost(): Promise<string[]> {
  const onPath = async (cmd: string): Promise<boolean> =>
    run('sh', ['-c', `command -v ${cmd}`]).then(
      () => true,
      () => false,
    );
  const commands = (await Promise.all(HOST_COMMANDS.map(async ([c]) => ((await onPath(c)) ? c : undefined)))).filter(
    (c): c is string => !!c,
  );
  const read = (path: string): Promise<string> => readFile(path, 'utf8').catch(() => '');
  return missingForNode({
    platform: process.platform,
    uid: process.getuid?.(),
    commands,
    paths: HOST_PATHS.map(([p]) => p).filter((p) => existsSync(p)),
    status: await read('/proc/self/status'),
    filesystems: await read('/proc/filesystems'),
    mountinfo: await read('/proc/self/mountinfo'),
  });
}

/** Throws one error listing {@link checkNodeHost}'s findings. */
export async function assertNodeHost(): Promise<void> {
  const missing = await checkNodeHost();
  if (missing.length)
    throw new Error(
      `this machine cannot run the test node; missing:\n  - ${missing.join('\n  - ')}\n(see README "A real node" and .ci/run)`,
    );
}

/** Runs scripts/build-controlplane.sh --node; returns the folder with kubelet and kube-scheduler. */
export async function ensureNodeBinaries(log: (line: string) => void = () => {}): Promise<string> {
  const script = join(repoRoot(), 'scripts', 'build-controlplane.sh');
  const child = spawn('bash', [script, '--node'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let tail: string[] = [];
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    for (const line of d.split('\n').filter(Boolean)) {
      log(line);
      tail = [...tail, line].slice(-20);
    }
  });
  const code = await new Promise<number | null>((res) => child.once('close', res));
  if (code !== 0) throw new Error(`${script} --node: exited with ${String(code)}\n${tail.join('\n')}`);
  const dir = stdout.trim().split('\n').pop() ?? '';
  if (!dir) throw new Error(`${script} --node: printed no binary folder`);
  return dir;
}

async function waitUntil(
  proc: ManagedProcess | undefined,
  what: string,
  ok: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await ok().catch(() => false)) return;
    const exit = proc?.exit();
    if (proc && exit) {
      throw new Error(
        `${proc.name}: exited (code ${String(exit.code)}, signal ${String(exit.signal)}) before ${what}; last lines of ${proc.logPath}:\n${await proc.logTail()}`,
      );
    }
    if (Date.now() > deadline) {
      throw new Error(
        `test node: not ${what} after ${timeoutMs} ms${proc ? `; last lines of ${proc.logPath}:\n${await proc.logTail()}` : ''}`,
      );
    }
    await sleep(intervalMs);
  }
}

/**
 * Creates `/gitops-<id>` in every cgroup hierarchy: v1 cpuset needs its cpus and mems copied in;
 * on cgroup v2 the kubelet's children need the controllers delegated (not checked on this v1
 * machine: best effort, the kubelet names what it lacks).
 */
async function makeCgroupRoots(mounts: string[], name: string): Promise<void> {
  for (const m of mounts) {
    const dir = join(m, name);
    await mkdir(dir, { recursive: true });
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      if (existsSync(join(m, file))) await writeFile(join(dir, file), await readFile(join(m, file), 'utf8'));
    }
    // Only a pure v2 host (one hierarchy at /sys/fs/cgroup); hybrid's "unified" is left as it works.
    if (m !== '/sys/fs/cgroup') continue;
    const controllers = (await readFile(join(dir, 'cgroup.controllers'), 'utf8').catch(() => ''))
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    if (controllers.length) {
      await writeFile(join(dir, 'cgroup.subtree_control'), controllers.map((c) => `+${c}`).join(' ')).catch(() => {});
    }
  }
}

/** Records this node in the machine-wide registry and which fixed dirs a test node creates. */
async function register(id: string, dir: string): Promise<void> {
  await mkdir(join(NODE_REGISTRY, 'nodes'), { recursive: true });
  await writeFile(join(NODE_REGISTRY, 'nodes', id), dir);
  for (const d of HOST_FIXED_DIRS) {
    if (!existsSync(d)) {
      await mkdir(d, { recursive: true });
      await appendFile(join(NODE_REGISTRY, 'created'), `${d}\n`);
    }
  }
}

/** Starts containerd, kube-scheduler and the kubelet; resolves once the Node is Ready. */
export async function startNode(opts: StartNodeOptions): Promise<TestNode> {
  const log = opts.log ?? (() => {});
  await assertNodeHost();
  const binDir = opts.binDir ?? (await ensureNodeBinaries(log));
  const t0 = Date.now();
  const group = await ProcessGroup.create({ prefix: 'gitops-node-', handleSignals: opts.handleSignals ?? true });
  const dir = group.dir;
  try {
    const id = randomBytes(4).toString('hex');
    const [addrs, routes] = await Promise.all([run('ip', ['-o', '-4', 'addr']), run('ip', ['-o', '-4', 'route'])]);
    const identity: NodeIdentity = {
      id,
      bridge: `gitops${id}`,
      subnet: pickSubnet(addrs.stdout + routes.stdout),
      cgroupRoot: `/gitops-${id}`,
    };
    const device = defaultRouteDevice(routes.stdout);
    const nodeIp = device
      ? firstAddress((await run('ip', ['-o', '-4', 'addr', 'show', 'dev', device])).stdout)
      : undefined;
    if (!nodeIp)
      throw new Error(
        "test node: no IPv4 address on the default route's device; the kubelet's node IP cannot be loopback",
      );
    const mounts = cgroupMounts(await readFile('/proc/self/mountinfo', 'utf8'));
    const cgroupV1 = mounts.some((m) => m.endsWith('/memory'));
    // The cleanup script first: from here on every layer (stop, exit handler, watchdog) uses it.
    await group.setCleanup(nodeCleanupScript({ dir, identity, cgroupMounts: mounts }));
    await register(id, dir);
    await makeCgroupRoots(mounts, identity.cgroupRoot.slice(1));

    const kubeconfig = join(dir, 'admin.kubeconfig');
    const containerdAddress = join(dir, 'containerd.sock');
    const [kubeletPort, healthzPort] = await freePorts(2);
    await Promise.all(
      ['cni/net.d', 'cni/ipam', 'images', 'kubelet', 'pod-logs'].map((d) => mkdir(join(dir, d), { recursive: true })),
    );
    await Promise.all([
      copyFile(opts.kubeconfigPath, kubeconfig),
      writeFile(join(dir, 'containerd.toml'), containerdConfig(dir)),
      writeFile(
        join(dir, 'cni', 'net.d', '10-gitops.conflist'),
        JSON.stringify(cniConfig(identity, join(dir, 'cni', 'ipam')), null, 2),
      ),
      writeFile(
        join(dir, 'kubelet.yaml'),
        toYaml(kubeletConfig({ dir, identity, port: kubeletPort, healthzPort, cgroupV1 })),
      ),
    ]);

    const containerd = group.start('containerd', 'containerd', ['--config', join(dir, 'containerd.toml')]);
    const scheduler = group.start('kube-scheduler', join(binDir, 'kube-scheduler'), [
      '--kubeconfig',
      kubeconfig,
      '--authentication-kubeconfig',
      kubeconfig,
      '--authorization-kubeconfig',
      kubeconfig,
      '--leader-elect=false',
      '--secure-port=0',
    ]);
    const ctr = (...args: string[]): Promise<unknown> =>
      run('ctr', ['--address', containerdAddress, '--namespace', 'k8s.io', ...args], { maxBuffer: 1 << 24 });
    const importArchive = async (path: string): Promise<void> => {
      await ctr('images', 'import', path).catch((err: Error) => {
        throw new Error(`ctr images import ${path}: ${err.message}`);
      });
    };
    const importImage = async (spec: ImageSpec): Promise<void> => {
      const file = join(dir, 'images', `${spec.ref.replace(/[^a-zA-Z0-9.-]+/g, '_')}.tar`);
      await writeDockerArchive(spec, file);
      await importArchive(file);
    };
    const specs = Promise.all([pauseImage(), nginxImage(), ...(opts.images ?? [])]);
    await waitUntil(
      containerd,
      'serving on its socket',
      async () => (await ctr('version'), true),
      CONTAINERD_TIMEOUT_MS,
      50,
    );
    const containerdMs = Date.now() - t0;
    log(`containerd ready after ${containerdMs} ms`);
    const images = (async () => {
      await Promise.all((await specs).map(importImage));
      return Date.now() - t0;
    })();

    const name = hostname();
    const kubelet = group.start('kubelet', join(binDir, 'kubelet'), [
      '--config',
      join(dir, 'kubelet.yaml'),
      '--kubeconfig',
      kubeconfig,
      '--root-dir',
      join(dir, 'kubelet'),
      '--cert-dir',
      join(dir, 'kubelet', 'pki'),
      '--hostname-override',
      name,
      '--node-ip',
      nodeIp,
      '-v',
      '1',
    ]);
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    await waitUntil(
      kubelet,
      `Ready (Node ${name})`,
      async () => {
        const node = await core.readNode({ name });
        return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
      },
      NODE_READY_TIMEOUT_MS,
      100,
    );
    const readyMs = Date.now() - t0;
    const imagesMs = await images;
    log(`node ${name} Ready after ${readyMs} ms (images imported after ${imagesMs} ms)`);

    let stopping = false;
    let reportExit: (n: string) => void = () => {};
    const unexpectedExit = new Promise<string>((res) => (reportExit = res));
    for (const p of [containerd, scheduler, kubelet]) void p.exited.then(() => !stopping && reportExit(p.name));
    return {
      name,
      identity,
      dir,
      containerdAddress,
      timings: { containerdMs, imagesMs, readyMs },
      unexpectedExit,
      importImage,
      importArchive,
      stop: async () => {
        stopping = true;
        const s0 = Date.now();
        // All at once: the pods, the host state and the API objects are all thrown away, so nothing
        // waits for an orderly drain; the cleanup script then kills what the processes left.
        await group.dispose(2000, true);
        return Date.now() - s0;
      },
    };
  } catch (err) {
    await group.dispose(1000, true).catch(() => {});
    throw err;
  }
}

/** The names of the folders of test nodes still registered on this machine (for tests). */
export async function registeredNodes(): Promise<string[]> {
  return readdir(join(NODE_REGISTRY, 'nodes')).catch(() => []);
}

/** Environment variables through which the node project's global setup publishes the node. */
export const NODE_TEST_ENV = {
  dir: 'GITOPS_TEST_NODE_DIR',
  containerdAddress: 'GITOPS_TEST_CONTAINERD_ADDRESS',
  name: 'GITOPS_TEST_NODE_NAME',
} as const;

/** What a test in the `node` jest project can do with the run's node. */
export interface TestNodeHandle {
  name: string;
  containerdAddress: string;
  importImage(spec: ImageSpec): Promise<void>;
  importArchive(path: string): Promise<void>;
}

/** The node the `node` project's global setup started, for test workers (see NODE_TEST_ENV). */
export function testNode(): TestNodeHandle {
  const get = (name: string): string => {
    const v = process.env[name];
    if (!v)
      throw new Error(
        `${name} is not set: run this test in jest's node project (npm test, or --selectProjects node), whose global setup starts the node`,
      );
    return v;
  };
  const containerdAddress = get(NODE_TEST_ENV.containerdAddress);
  // Set by global setup; a node from `npm run cluster -- --node` publishes only its socket.
  const dir = process.env[NODE_TEST_ENV.dir];
  const importArchive = async (path: string): Promise<void> => {
    await run('ctr', ['--address', containerdAddress, '--namespace', 'k8s.io', 'images', 'import', path], {
      maxBuffer: 1 << 24,
    }).catch((err: Error) => {
      throw new Error(`ctr images import ${path}: ${err.message}`);
    });
  };
  return {
    name: process.env[NODE_TEST_ENV.name] ?? hostname(),
    containerdAddress,
    importArchive,
    importImage: async (spec) => {
      const images = dir ? join(dir, 'images') : await mkdtemp(join(tmpdir(), 'gitops-image-'));
      await mkdir(images, { recursive: true });
      const file = join(
        images,
        `${spec.ref.replace(/[^a-zA-Z0-9.-]+/g, '_')}-${process.pid}-${randomBytes(3).toString('hex')}.tar`,
      );
      try {
        await writeDockerArchive(spec, file);
        await importArchive(file);
      } finally {
        await rm(dir ? file : images, { recursive: true, force: true });
      }
    },
  };
}
