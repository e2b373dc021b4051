/**
 * Container images made offline, for the test node (e2e/harness/node.ts): no registry is
 * reachable here, so each image is assembled from files on this machine into a docker-archive
 * tarball (`manifest.json`, `config.json`, one reproducible `layer.tar`) that
 * `ctr images import` accepts.
 *
 * - {@link pauseImage}: the sandbox ("pause") image, Debian's static busybox sleeping for ever.
 * - {@link nginxImage}: `docker.io/library/nginx:1.27` so that a manifest saying `image: nginx:1.27`
 *   (the seed's) runs unchanged with the default pull policy. It is the real nginx binary from
 *   Debian's package (1.22 in bookworm, whatever the tag says) with exactly the libraries `ldd`
 *   lists, a minimal configuration that serves the welcome page on port 80, logs to the
 *   container's stdout/stderr and runs its workers as `nginx` (uid 101), as the official image does.
 *
 * The pure parts (ldd parsing, config and manifest documents) are unit-tested in images.test.ts;
 * {@link writeDockerArchive} does the file work with `tar`.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { copyFile, chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One entry of an image's single layer. */
export type ImageEntry =
  | { kind: 'copy'; path: string; from: string; mode?: number }
  /** A whole directory copied with `cp -a` (dist/, node_modules/): modes and links kept. */
  | { kind: 'tree'; path: string; from: string }
  | { kind: 'file'; path: string; content: string; mode?: number }
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'symlink'; path: string; target: string };

/** What becomes the image's `config.config` (the Docker/OCI image configuration). */
export interface ImageRuntimeConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  StopSignal?: string;
  Labels?: Record<string, string>;
}

export interface ImageSpec {
  /** The reference it is imported as, fully qualified (`docker.io/library/nginx:1.27`). */
  ref: string;
  entries: ImageEntry[];
  config: ImageRuntimeConfig;
}

/** The reference the node's containerd uses as its sandbox image. */
export const PAUSE_IMAGE = 'localhost/gitops/pause:busybox';
/** The reference a manifest's `image: nginx:1.27` resolves to. */
export const NGINX_IMAGE = 'docker.io/library/nginx:1.27';

const BUSYBOX = '/bin/busybox';
const NGINX = '/usr/sbin/nginx';
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The shared libraries (and the dynamic loader) that `ldd` says a binary loads, as absolute paths.
 * Lines look like `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)`, `/lib64/ld-linux-x86-64.so.2
 * (0x...)` or `linux-vdso.so.1 (0x...)` (the kernel's, no file). A `not found` is an error.
 */
export function parseLdd(output: string, binary: string): string[] {
  const libs: string[] = [];
  for (const raw of output.split('\n')) {
    const line = raw.trim();
    if (
      !line ||
      line.startsWith('linux-vdso') ||
      line.startsWith('statically linked') ||
      line.includes('not a dynamic executable')
    )
      continue;
    if (line.includes('=> not found'))
      throw new Error(`${binary}: ldd cannot find ${line.split(' ')[0]}; install the package that provides it`);
    const arrow = /=>\s+(\/\S+)\s+\(/.exec(line);
    const direct = /^(\/\S+)\s+\(/.exec(line);
    const path = arrow?.[1] ?? direct?.[1];
    if (path && !libs.includes(path)) libs.push(path);
  }
  return libs;
}

/** The image's `config.json` for a layer whose uncompressed tar has sha256 `layerDigest`. */
export function imageConfigDocument(config: ImageRuntimeConfig, layerDigest: string): object {
  return {
    architecture: 'amd64',
    os: 'linux',
    created: '1970-01-01T00:00:00Z',
    config,
    rootfs: { type: 'layers', diff_ids: [`sha256:${layerDigest}`] },
    history: [{ created: '1970-01-01T00:00:00Z', created_by: 'gitops e2e/harness/images.ts' }],
  };
}

/** The docker-archive `manifest.json`. */
export function archiveManifestDocument(ref: string): object {
  return [{ Config: 'config.json', RepoTags: [ref], Layers: ['layer.tar'] }];
}

/** The busybox-based pause image. */
export function pauseImage(): ImageSpec {
  return {
    ref: PAUSE_IMAGE,
    entries: [{ kind: 'copy', path: BUSYBOX, from: BUSYBOX, mode: 0o755 }],
    config: { Entrypoint: [BUSYBOX, 'sleep', '2147483647'], Env: [PATH_ENV], StopSignal: 'SIGKILL' },
  };
}

const NGINX_CONF = `# Minimal configuration of the test image (e2e/harness/images.ts): serves the welcome page on
# port 80 as the official nginx image does, access and error log to the container's output.
user nginx;
worker_processes 1;
error_log /dev/stderr notice;
pid /run/nginx.pid;
events { worker_connections 256; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log /dev/stdout;
  sendfile on;
  keepalive_timeout 65;
  server {
    listen 80;
    listen [::]:80;
    server_name localhost;
    location / {
      root /usr/share/nginx/html;
      index index.html;
    }
  }
}
`;

const INDEX_HTML = `<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and working.</p>
<p>(The gitops test image: Debian's nginx binary, tagged nginx:1.27 for the seed's manifest.)</p>
</body>
</html>
`;

/** Entries and config of the nginx image for a binary loading `libs` (see {@link parseLdd}). */
export function nginxImageSpec(libs: string[], mimeTypes: string): ImageSpec {
  const dirs = [
    '/etc/nginx',
    '/usr/share/nginx/html',
    '/var/lib/nginx',
    '/var/log/nginx',
    '/run',
    '/tmp',
    '/var/cache/nginx',
  ];
  return {
    ref: NGINX_IMAGE,
    entries: [
      ...dirs.map((path): ImageEntry => ({ kind: 'dir', path, mode: path === '/tmp' ? 0o1777 : 0o755 })),
      { kind: 'copy', path: NGINX, from: NGINX, mode: 0o755 },
      ...libs.map((lib): ImageEntry => ({ kind: 'copy', path: lib, from: lib, mode: 0o755 })),
      { kind: 'file', path: '/etc/nginx/nginx.conf', content: NGINX_CONF },
      { kind: 'file', path: '/etc/nginx/mime.types', content: mimeTypes },
      { kind: 'file', path: '/usr/share/nginx/html/index.html', content: INDEX_HTML },
      {
        kind: 'file',
        path: '/etc/passwd',
        content: 'root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\n',
      },
      { kind: 'file', path: '/etc/group', content: 'root:x:0:\nnginx:x:101:\n' },
      { kind: 'file', path: '/etc/nsswitch.conf', content: 'passwd: files\ngroup: files\nhosts: files dns\n' },
      // Debian's build writes its compiled-in default error log before reading the configuration.
      { kind: 'symlink', path: '/var/log/nginx/error.log', target: '/dev/stderr' },
      { kind: 'symlink', path: '/var/log/nginx/access.log', target: '/dev/stdout' },
    ],
    config: {
      Cmd: ['/usr/sbin/nginx', '-g', 'daemon off;'],
      Env: [PATH_ENV],
      ExposedPorts: { '80/tcp': {} },
      StopSignal: 'SIGQUIT',
      Labels: {
        'org.opencontainers.image.description':
          "Debian's nginx binary and the libraries it links; a stand-in for nginx:1.27",
      },
    },
  };
}

/** The nginx image from this machine's `/usr/sbin/nginx` (Debian's `nginx-light` or `nginx`). */
export async function nginxImage(): Promise<ImageSpec> {
  if (!existsSync(NGINX))
    throw new Error(`${NGINX}: missing; install Debian's nginx-light package (apt-get install nginx-light)`);
  const { stdout } = await run('ldd', [NGINX]);
  const mimeTypes = await readFile('/etc/nginx/mime.types', 'utf8').catch(
    () => 'types { text/html html; text/css css; }\n',
  );
  return nginxImageSpec(parseLdd(stdout, NGINX), mimeTypes);
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Writes `spec` as a docker-archive tarball to `outFile` (through a scratch folder next to it).
 * The layer is reproducible: sorted names, mtime 0, owner root.
 */
export async function writeDockerArchive(spec: ImageSpec, outFile: string): Promise<void> {
  const work = await mkdtemp(join(dirname(outFile), '.image-'));
  try {
    const rootfs = join(work, 'rootfs');
    await mkdir(rootfs);
    for (const e of spec.entries) {
      const dest = join(rootfs, e.path);
      if (e.kind === 'dir') {
        await mkdir(dest, { recursive: true });
        await chmod(dest, e.mode ?? 0o755);
        continue;
      }
      await mkdir(dirname(dest), { recursive: true });
      if (e.kind === 'tree') {
        await run('cp', ['-a', '--no-target-directory', e.from, dest]);
        continue;
      }
      if (e.kind === 'symlink') await symlink(e.target, dest);
      else if (e.kind === 'copy') await copyFile(e.from, dest);
      else await writeFile(dest, e.content);
      if (e.kind !== 'symlink') await chmod(dest, e.mode ?? 0o644);
    }
    const image = join(work, 'image');
    await mkdir(image);
    const layer = join(image, 'layer.tar');
    await run('tar', [
      '-C',
      rootfs,
      '--sort=name',
      '--mtime=@0',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-cf',
      layer,
      '.',
    ]);
    await writeFile(
      join(image, 'config.json'),
      JSON.stringify(imageConfigDocument(spec.config, await sha256File(layer))),
    );
    await writeFile(join(image, 'manifest.json'), JSON.stringify(archiveManifestDocument(spec.ref)));
    await run('tar', [
      '-C',
      image,
      '--sort=name',
      '--mtime=@0',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-cf',
      outFile,
      'manifest.json',
      'config.json',
      'layer.tar',
    ]);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
