// The pure parts of the test node (e2e/harness/node.ts) and its offline images (images.ts): what a
// machine lacks, per-run names, the generated cleanup script, ldd parsing and the image documents.
import { describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { archiveManifestDocument, imageConfigDocument, nginxImageSpec, parseLdd } from './images.js';
import {
  cgroupMounts,
  cniConfig,
  containerdConfig,
  defaultRouteDevice,
  firstAddress,
  kubeletConfig,
  missingForNode,
  nodeCleanupScript,
  pickSubnet,
  type NodeHostFacts,
  type NodeIdentity,
} from './node.js';

const run = promisify(execFile);

const MOUNTINFO_V1 = [
  '25 1 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755',
  '26 25 0:23 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '27 25 0:24 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset',
  '28 25 0:25 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  '29 1 0:26 / /proc rw - proc proc rw',
].join('\n');
const MOUNTINFO_V2 = '30 1 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n';

const GOOD: NodeHostFacts = {
  platform: 'linux',
  uid: 0,
  commands: ['containerd', 'ctr', 'runc', 'ip', 'tar', 'ldd'],
  paths: ['/usr/lib/cni/bridge', '/usr/lib/cni/host-local', '/usr/lib/cni/loopback', '/bin/busybox', '/usr/sbin/nginx'],
  status: 'Name:\tnode\nCapEff:\t000001fffeffffff\n',
  filesystems: 'nodev\tproc\nnodev\toverlay\n',
  mountinfo: MOUNTINFO_V1,
};

describe('missingForNode', () => {
  it.each<[string, Partial<NodeHostFacts>, string | undefined]>([
    ['a machine with everything', {}, undefined],
    ['cgroup v2 instead of v1', { mountinfo: MOUNTINFO_V2 }, undefined],
    ['not root', { uid: 1000 }, 'root: the node mounts'],
    ['no containerd', { commands: ['runc', 'ip', 'tar', 'ldd'] }, "containerd: install Debian's containerd package"],
    [
      'no CNI plugins',
      { paths: ['/bin/busybox', '/usr/sbin/nginx'] },
      "/usr/lib/cni/bridge: install Debian's containernetworking-plugins package",
    ],
    ['no busybox', { paths: GOOD.paths.filter((p) => p !== '/bin/busybox') }, 'busybox-static'],
    ['no nginx', { paths: GOOD.paths.filter((p) => p !== '/usr/sbin/nginx') }, 'nginx-light'],
    ['no CAP_SYS_ADMIN', { status: 'CapEff:\t00000000a80425fb\n' }, 'capability CAP_SYS_ADMIN'],
    ['no overlay filesystem', { filesystems: 'nodev\tproc\n' }, 'the overlay filesystem'],
    [
      'no memory cgroup',
      {
        mountinfo: MOUNTINFO_V1.split('\n')
          .filter((l) => !l.includes('memory'))
          .join('\n'),
      },
      'a cgroup memory controller',
    ],
    ['not Linux', { platform: 'darwin' }, 'a Linux host'],
  ])('%s', (_what, change, expected) => {
    const missing = missingForNode({ ...GOOD, ...change });
    if (expected === undefined) expect(missing).toEqual([]);
    else expect(missing.join('\n')).toContain(expected);
  });
});

describe('per-run names and configuration', () => {
  it('picks a 10.244.X.0/24 that no address or route uses', () => {
    const used = Array.from({ length: 255 }, (_, i) => `10.244.${i}.0/24 dev gitops${i}`).join('\n');
    expect(pickSubnet(used)).toBe('10.244.255.0/24');
    expect(pickSubnet('', () => 0)).toBe('10.244.0.0/24');
    expect(() => pickSubnet(`${used}\n10.244.255.1`)).toThrow(/no free 10\.244/);
  });

  it('finds the default route device, its address and the cgroup hierarchies', () => {
    expect(defaultRouteDevice('10.88.0.0/16 dev cni-podman0 proto kernel\ndefault via 192.0.2.1 dev eth0 \n')).toBe(
      'eth0',
    );
    expect(firstAddress('4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0')).toBe('192.0.2.2');
    expect(cgroupMounts(MOUNTINFO_V1)).toEqual([
      '/sys/fs/cgroup/memory',
      '/sys/fs/cgroup/cpuset',
      '/sys/fs/cgroup/unified',
    ]);
  });

  const identity: NodeIdentity = {
    id: 'ab12cd34',
    bridge: 'gitopsab12cd34',
    subnet: '10.244.7.0/24',
    cgroupRoot: '/gitops-ab12cd34',
  };

  it('keeps everything of containerd, CNI and the kubelet in the run folder or named by the run', () => {
    const toml = containerdConfig('/tmp/gitops-node-x');
    for (const line of toml.split('\n').filter((l) => /^\s*(root|state|address|path|Root|conf_dir) = /.test(l))) {
      expect(line).toMatch(/"(\/tmp\/gitops-node-x\/[^"]*|)"$/);
    }
    expect(toml).toContain('restrict_oom_score_adj = true');
    const cni = cniConfig(identity, '/tmp/gitops-node-x/cni/ipam') as {
      plugins: Array<{ bridge: string; ipMasq: boolean; ipam: { ranges: unknown } }>;
    };
    expect(cni.plugins[0]).toMatchObject({
      bridge: 'gitopsab12cd34',
      ipMasq: false,
      ipam: { ranges: [[{ subnet: '10.244.7.0/24', gateway: '10.244.7.1' }]] },
    });
    const kubelet = kubeletConfig({ dir: '/tmp/gitops-node-x', identity, port: 1, healthzPort: 2, cgroupV1: true });
    expect(kubelet).toMatchObject({
      cgroupRoot: '/gitops-ab12cd34',
      failCgroupV1: false,
      imageGCHighThresholdPercent: 100,
      podLogsDir: '/tmp/gitops-node-x/pod-logs',
    });
    expect(identity.bridge.length).toBeLessThanOrEqual(15); // IFNAMSIZ
  });

  it("generates a cleanup script that bash accepts and that removes only this run's things", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gitops-node-cleanup-'));
    try {
      const script = nodeCleanupScript({ dir, identity, cgroupMounts: ['/sys/fs/cgroup/memory'] });
      await writeFile(join(dir, 'cleanup.sh'), script);
      await run('bash', ['-n', join(dir, 'cleanup.sh')]);
      expect(script).toContain('CG_NAME="gitops-ab12cd34"');
      expect(script).toContain('rm -f /var/lib/cni/results/gitops-"$ID"-*');
      expect(script).toContain('rm -rf --one-file-system "$DIR"');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('offline images', () => {
  it('parses ldd output into the loader and the libraries, and refuses a missing one', () => {
    const out = [
      '\tlinux-vdso.so.1 (0x00007ffd)',
      '\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f3b)',
      '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3a)',
      '\t/lib64/ld-linux-x86-64.so.2 (0x00007f3b)',
    ].join('\n');
    expect(parseLdd(out, '/usr/sbin/nginx')).toEqual([
      '/lib/x86_64-linux-gnu/libz.so.1',
      '/lib/x86_64-linux-gnu/libc.so.6',
      '/lib64/ld-linux-x86-64.so.2',
    ]);
    expect(parseLdd('\tnot a dynamic executable', '/bin/busybox')).toEqual([]);
    expect(() => parseLdd('\tlibpcre2-8.so.0 => not found', '/usr/sbin/nginx')).toThrow(/libpcre2-8\.so\.0/);
  });

  it('describes nginx:1.27 as the official image runs it: port 80, workers as nginx, logs to the output', () => {
    const spec = nginxImageSpec(['/lib/x86_64-linux-gnu/libc.so.6'], 'types {}');
    expect(spec.ref).toBe('docker.io/library/nginx:1.27');
    expect(spec.config).toMatchObject({
      Cmd: ['/usr/sbin/nginx', '-g', 'daemon off;'],
      ExposedPorts: { '80/tcp': {} },
      StopSignal: 'SIGQUIT',
    });
    const conf = spec.entries.find((e) => e.path === '/etc/nginx/nginx.conf');
    expect(conf?.kind === 'file' && conf.content).toMatch(/user nginx;[\s\S]*listen 80;/);
    expect(spec.entries).toContainEqual({ kind: 'symlink', path: '/var/log/nginx/access.log', target: '/dev/stdout' });
    expect(spec.entries).toContainEqual(
      expect.objectContaining({ kind: 'copy', path: '/lib/x86_64-linux-gnu/libc.so.6' }),
    );
    expect(spec.entries).toContainEqual({ kind: 'file', path: '/etc/nginx/mime.types', content: 'types {}' });
  });

  it('writes the docker-archive documents ctr imports', () => {
    expect(archiveManifestDocument('localhost/x:1')).toEqual([
      { Config: 'config.json', RepoTags: ['localhost/x:1'], Layers: ['layer.tar'] },
    ]);
    expect(imageConfigDocument({ User: '1000' }, 'ab')).toMatchObject({
      architecture: 'amd64',
      os: 'linux',
      config: { User: '1000' },
      rootfs: { type: 'layers', diff_ids: ['sha256:ab'] },
    });
  });
});
